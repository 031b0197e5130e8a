"""The lifecycle hook of ``test_cli_dlq_redrive.py``: records every run in Redis
(``t:hook-runs:<sid>``, with the ``info`` it got) and fails while
``t:hook-fail:<sid>`` is set. It has a queue of its own, which its worker alone
reads: a redrive must find that queue (``agora_callbacks.task_queues``)."""

from __future__ import annotations

import json
from typing import Any

from process_redis import client

from agora_callbacks import on_recording


@on_recording("files_ready", name="e2e.copy_files", queue="hooks-q")
def copy_files(recording: dict[str, Any], info: dict[str, Any]) -> None:
    sid = recording["sid"]
    client().rpush(f"t:hook-runs:{sid}", json.dumps(
        {"info": info, "files": [f["file_name"] for f in recording.get("files", [])]}))
    if client().get(f"t:hook-fail:{sid}"):
        raise RuntimeError("bucket unreachable")
