"""Per-process resources of the workers: settings, Redis client, ordering parameters.

Built lazily and rebuilt in a forked child (prefork pool), so no connection is
shared across processes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings
from agora_callbacks.workers.ordering import Ordering
from agora_callbacks.workers.ordering.clock import RedisClock

#: Publishes one handler task per name with the given task arguments.
Publish = Callable[[Sequence[str], list[Any]], None]


def _no_publisher(names: Sequence[str], args: list[Any]) -> None:
    raise RuntimeError("no publisher configured: workers.app configures the Celery one")


@dataclass(frozen=True)
class Runtime:
    """What the workers' code needs: settings, a Redis client, the ordering scripts,
    the clock every decision reads, and how handler tasks are published (Celery;
    the simulation in ``tests/sim`` gives its own clock, client and publisher)."""

    settings: Settings
    client: redis.Redis
    ordering: Ordering
    clock: Any
    publish: Publish

    @classmethod
    def build(cls, settings: Settings, client: redis.Redis | None = None,
              clock: Any = None, publish: Publish | None = None) -> Runtime:
        clock = clock if clock is not None else RedisClock()
        return cls(
            settings=settings,
            client=client if client is not None else client_from_settings(settings),
            ordering=Ordering(
                ttl_s=settings.dedupe_ttl_s,
                hold_ms=settings.reorder_hold_ms,
                lease_ms=settings.dispatch_lease_ms,
                deadline_ms=settings.handler_deadline_s * 1000,
                deadletter_maxlen=settings.deadletter_maxlen,
                clock=clock,
                timeline_ttl_s=settings.record_ttl_s,
            ),
            clock=clock,
            publish=publish if publish is not None else _no_publisher,
        )


_lock = threading.Lock()
_current: tuple[int, Runtime] | None = None
_settings: Settings | None = None
_publish: Publish | None = None


def configure(settings: Settings, publish: Publish | None = None) -> None:
    """Use these settings (and this publisher) from now on (the Celery app calls it
    once)."""
    global _settings, _current, _publish
    with _lock:
        _settings = settings
        _publish = publish
        _current = None


def _settings_in_use() -> Settings:
    """Those given to ``configure``, else the environment's (read once); call it
    holding ``_lock``."""
    global _settings
    if _settings is None:
        _settings = Settings.from_env()
    return _settings


def get_settings() -> Settings:
    """The settings in use (those given to ``configure``, else the environment's),
    without building the runtime (no Redis client)."""
    with _lock:
        return _settings_in_use()


def get() -> Runtime:
    """This process's runtime (built on first use in each process)."""
    global _current
    pid = os.getpid()
    current = _current
    if current is not None and current[0] == pid:
        return current[1]
    with _lock:
        if _current is None or _current[0] != pid:
            _current = (pid, Runtime.build(_settings_in_use(), publish=_publish))
        return _current[1]
