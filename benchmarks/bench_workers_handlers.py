"""Handlers of ``bench_workers.py``: one no-op handler, one bare Celery no-op task.

Both do the same Redis work (count the run, note its start time) in one round trip.
"""

from __future__ import annotations

import time
from typing import Any

from process_redis import client

from agora_callbacks.workers import on_event
from agora_callbacks.workers.app import celery_app


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
