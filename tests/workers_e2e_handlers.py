"""Handlers the end-to-end worker tests load (CALLBACK_HANDLERS=workers_e2e_handlers).

Every run is recorded in Redis (``t:starts`` when it starts, ``t:runs`` when it
ends) with its pid, times, sid, sequence, key, late and gap, so the tests can
check order, non-overlap and once. Per-event behaviour is read from the hash
``t:ctl:<sid>:<sequence>``: ``sleep_ms``, ``fail_times`` (fail that many attempts,
then succeed), ``always_fail``, ``ignore`` (raise Celery's ``Ignore``), ``reject``
(raise ``Reject``), ``requeue_times`` (raise ``Reject(requeue=True)`` that many
attempts, then succeed), ``pause_redis_ms`` (after the run is recorded, pause
Redis's writes for that long with ``CLIENT PAUSE ... WRITE``, once: the handler's
outcome then reaches a Redis that does not answer).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from celery.exceptions import Ignore, Reject
from process_redis import client

from agora_callbacks.workers import on_event


class Flaky(Exception):
    """A failure the handler is retried for."""


def _run(name: str, event: Any, key: str, late: bool, gap: Any) -> None:
    r = client()
    row = {"handler": name, "sid": event.sid, "seq": event.sequence, "key": key,
           "late": late, "gap": list(gap) if gap else None, "pid": os.getpid(),
           "notice": event.notice_id, "start": time.time()}
    r.rpush("t:starts", json.dumps(row))
    ctl = {k.decode(): v.decode() for k, v in
           r.hgetall(f"t:ctl:{event.sid}:{event.sequence}").items()}
    if ctl.get("sleep_ms"):
        time.sleep(int(ctl["sleep_ms"]) / 1000)
    if name == "every":
        attempt = r.incr(f"t:attempts:{key}")
        if attempt <= int(ctl.get("fail_times", 0)):
            raise Flaky(f"attempt {attempt}")
        if ctl.get("always_fail"):
            raise Flaky("this handler never succeeds")
        if ctl.get("ignore"):
            raise Ignore()
        if ctl.get("reject"):
            raise Reject("not an event for us", requeue=False)
        if r.incr(f"t:requeues:{key}") <= int(ctl.get("requeue_times", 0)):
            raise Reject("not now", requeue=True)
    row["end"] = time.time()
    r.rpush("t:runs", json.dumps(row))
    if ctl.get("pause_redis_ms") and r.incr(f"t:paused:{key}:{name}") == 1:
        r.execute_command("CLIENT", "PAUSE", int(ctl["pause_redis_ms"]), "WRITE")


@on_event("*", name="e2e.every", autoretry_for=(Flaky,), max_retries=2,
          default_retry_delay=0.05)
def every(event: Any, key: str, late: bool, gap: Any) -> None:
    _run("every", event, key, late, gap)


@on_event("uploaded", name="e2e.files")
def files(event: Any, **kwargs: Any) -> None:
    _run("files", event, kwargs["key"], kwargs["late"], kwargs["gap"])
