"""Redis clients, built from settings with short timeouts."""

from __future__ import annotations

import redis

from agora_callbacks.settings import Settings


def client_from_settings(settings: Settings, **overrides: object) -> redis.Redis:
    """A client whose connect and read timeouts are ``REDIS_TIMEOUT_S``.

    Short timeouts matter at the ingress: a Redis outage must become a 503 long
    before NCS's 10 s budget is spent. ``health_check_interval`` makes a pooled
    connection that died while idle reconnect instead of failing once.
    """
    options: dict[str, object] = {
        "socket_timeout": settings.redis_timeout_s,
        "socket_connect_timeout": settings.redis_timeout_s,
        "health_check_interval": 30,
        "retry_on_timeout": False,
    }
    options.update(overrides)
    return redis.Redis.from_url(settings.redis_url, **options)
