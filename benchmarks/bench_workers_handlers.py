"""Handlers of ``bench_workers.py``: one no-op handler, one bare Celery no-op task.

Both do the same Redis work (count the run, note its start time) in one round trip.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from workers import on_event
from workers.app import celery_app

_client: tuple[int, redis.Redis] | None = None


def client() -> redis.Redis:
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(os.environ["REDIS_URL"]))
    return _client[1]


def _note(key: str) -> None:
    started = time.time()
    pipe = client().pipeline(transaction=False)
    pipe.incr("bench:count")
    pipe.rpush("bench:starts", f"{key} {started:.6f}")
    pipe.execute()


@on_event("*", name="bench.handler")
def handler(event: Any, key: str) -> None:
    _note(key)


@celery_app.task(name="bench.noop")
def noop(key: str) -> None:
    _note(key)
