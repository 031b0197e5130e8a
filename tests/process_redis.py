"""One Redis client per process, for handler modules that worker processes load
(pool processes are forked: a client must not cross a fork)."""

from __future__ import annotations

import os

import redis

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    """This process's client to ``REDIS_URL``."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["REDIS_URL"]))
    return _client[1]
