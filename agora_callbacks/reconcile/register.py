"""``agora_callbacks.register_recording``: the Python side of the registration.

For a backend that runs in the same environment as the service (same ``REDIS_URL``):
the call stores what ``POST /recordings/<sid>/resource`` stores. Settings and the Redis
client are built on first use, once per process.
"""

from __future__ import annotations

import os
import threading

import redis

from agora_callbacks.errors import StorageUnavailable
from agora_callbacks.logs import get_logger
from agora_callbacks.reconcile import registration
from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings

log = get_logger("reconcile.register")

_lock = threading.Lock()
_cached: tuple[int, Settings, redis.Redis] | None = None


def _resources() -> tuple[Settings, redis.Redis]:
    global _cached
    with _lock:
        if _cached is None or _cached[0] != os.getpid():
            settings = Settings.from_env()
            _cached = (os.getpid(), settings, client_from_settings(settings))
        return _cached[1], _cached[2]


def register_recording(sid: str, resource_id: str, mode: str, *,
                       client: redis.Redis | None = None,
                       ttl_s: int | None = None) -> None:
    """Register the ``resourceId`` and mode (``"individual"``, ``"mix"`` or ``"web"``)
    of recording ``sid``, so that it can be reconciled with Agora's ``query``.

    Raises ``registration.InvalidRegistration`` (a ``ValueError``) naming what is
    wrong, ``StorageUnavailable`` when Redis cannot take it. ``client`` and
    ``ttl_s`` default to ``REDIS_URL`` and ``AGORA_RESOURCE_TTL_S``.
    """
    entry = registration.validate(sid, resource_id, mode)
    if client is None or ttl_s is None:
        settings, default_client = _resources()
        client = client if client is not None else default_client
        ttl_s = ttl_s if ttl_s is not None else settings.agora_resource_ttl_s
    try:
        registration.save(client, entry, ttl_s)
    except (redis.RedisError, OSError) as exc:
        raise StorageUnavailable(f"cannot store the registration of {sid}: {exc}") from exc
    log.info("reconcile.registered", sid=entry.sid, mode=entry.mode)
