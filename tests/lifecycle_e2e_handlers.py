"""Handlers of ``test_lifecycle_e2e.py``: a lifecycle hook for every phase (on a
queue of its own), one that fails once and is retried, and a user handler for
event 40 only (every other event is folded with no task)."""

from __future__ import annotations

import json
from typing import Any

from process_redis import client

from agora_callbacks import on_recording
from agora_callbacks.workers import on_event


@on_recording("started", "files_ready", "finished", "failed", "stalled",
              name="e2e.lifecycle", queue="lifecycle")
def every_phase(recording: dict[str, Any], phase: str, info: dict[str, Any]) -> None:
    client().rpush(f"e2e:hooks:{recording['sid']}", json.dumps(
        {"phase": phase, "info": info, "event_count": recording["event_count"],
         "files": [f["file_name"] for f in recording["files"]]}))


@on_recording("finished", name="e2e.flaky", autoretry_for=(RuntimeError,), max_retries=3,
              default_retry_delay=0)
def flaky(recording: dict[str, Any]) -> None:
    attempts = client().incr(f"e2e:flaky:{recording['sid']}")
    if attempts == 1:
        raise RuntimeError("first attempt fails")
    client().rpush(f"e2e:flaky-done:{recording['sid']}", attempts)


@on_event(40, name="e2e.started40")
def started(event: Any) -> None:
    client().incr(f"e2e:started40:{event.sid}")
