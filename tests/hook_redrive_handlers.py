"""The lifecycle hook of ``test_cli_dlq_redrive.py``: records every run in Redis
(``t:hook-runs:<sid>``, with the ``info`` it got) and fails while
``t:hook-fail:<sid>`` is set; and an event handler on the same queue that counts
its attempts (``t:files-attempts:<sid>``), fails while ``t:files-fail:<sid>`` is
set (retried once, then dead-lettered) and records a success
(``t:files-done:<sid>``). The queue is one of their own, which their worker alone
reads: their publishes, retries and redrives must all find it (the app's
``task_routes``, ``agora_callbacks.task_queues``)."""

from __future__ import annotations

import json
from typing import Any

from process_redis import client

from agora_callbacks import on_recording
from agora_callbacks.workers import on_event


@on_recording("files_ready", name="e2e.copy_files", queue="hooks-q")
def copy_files(recording: dict[str, Any], info: dict[str, Any]) -> None:
    sid = recording["sid"]
    client().rpush(f"t:hook-runs:{sid}", json.dumps(
        {"info": info, "files": [f["file_name"] for f in recording.get("files", [])]}))
    if client().get(f"t:hook-fail:{sid}"):
        raise RuntimeError("bucket unreachable")


@on_event(40, name="e2e.files", queue="hooks-q", autoretry_for=(RuntimeError,),
          max_retries=1, default_retry_delay=0)
def files(event: Any) -> None:
    client().incr(f"t:files-attempts:{event.sid}")
    if client().get(f"t:files-fail:{event.sid}"):
        raise RuntimeError("bucket unreachable")
    client().rpush(f"t:files-done:{event.sid}", "1")
