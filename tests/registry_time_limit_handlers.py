"""The handler ``tests/test_registry_time_limit_e2e.py`` loads into its worker
(``CALLBACK_HANDLERS=registry_time_limit_handlers``). Not imported by pytest itself.

Each run is recorded in Redis: ``tl:starts`` when it starts, ``tl:soft`` when its
soft time limit interrupted it, ``tl:runs`` when it returned. What it does is read
from ``tl:mode:<sid>:<sequence>``: ``cooperative`` sleeps until the soft time limit
stops it; ``stubborn`` catches that and sleeps on until the hard limit kills its
process; anything else returns at once.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded

from workers import on_event

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["REDIS_URL"]))
    return _client[1]


def _sleep(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)


@on_event("*", name="tl.slow")
def slow(event: Any, key: str) -> None:
    r = client()
    row = {"key": key, "sid": event.sid, "seq": event.sequence, "pid": os.getpid(),
           "start": time.time()}
    r.rpush("tl:starts", json.dumps(row))
    mode = (r.get(f"tl:mode:{event.sid}:{event.sequence}") or b"").decode()
    if mode == "cooperative":
        try:
            _sleep(120)
        except SoftTimeLimitExceeded:
            r.rpush("tl:soft", json.dumps({**row, "at": time.time()}))
            raise
    elif mode == "stubborn":
        try:
            _sleep(120)
        except SoftTimeLimitExceeded:
            r.rpush("tl:soft", json.dumps({**row, "at": time.time()}))
            _sleep(120)
    r.rpush("tl:runs", json.dumps({**row, "end": time.time()}))
