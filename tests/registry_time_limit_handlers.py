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

from celery.exceptions import SoftTimeLimitExceeded
from process_redis import client

from agora_callbacks.workers import on_event


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
