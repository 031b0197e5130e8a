"""Per-process resources of the workers: settings, Redis client, ordering parameters.

Built lazily and rebuilt in a forked child (prefork pool), so no connection is
shared across processes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import redis

from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings
from workers.ordering import Ordering


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    client: redis.Redis
    ordering: Ordering

    @classmethod
    def build(cls, settings: Settings) -> Runtime:
        return cls(
            settings=settings,
            client=client_from_settings(settings),
            ordering=Ordering(
                ttl_s=settings.dedupe_ttl_s,
                hold_ms=settings.reorder_hold_ms,
                lease_ms=settings.dispatch_lease_ms,
                deadline_ms=settings.handler_deadline_s * 1000,
            ),
        )


_lock = threading.Lock()
_current: tuple[int, Runtime] | None = None
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """Use these settings from now on (the Celery app calls it once)."""
    global _settings, _current
    with _lock:
        _settings = settings
        _current = None


def get() -> Runtime:
    """This process's runtime (built on first use in each process)."""
    global _current, _settings
    pid = os.getpid()
    current = _current
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _current is None or _current[0] != pid:
            if _settings is None:
                _settings = Settings.from_env()
            _current = (pid, Runtime.build(_settings))
        return _current[1]
