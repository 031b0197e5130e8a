"""Helpers of the worker tests: callback bodies and inbox entries."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from agora_callbacks import inbox

MSG_NAMES = {40: "recorder_started", 41: "recorder_leave", 31: "uploaded",
             30: "uploader_started", 11: "session_exit", 33: "uploading_progress",
             43: "recorder_audio_stream_state_changed"}


def body(sid: str | None, sequence: int | None, event_type: int = 40, *,
         notice_id: str | None = None, notify_ms: int | None = None,
         product_id: int = 3) -> bytes:
    """A Cloud Recording callback body (compact JSON)."""
    details: dict[str, Any] = {"msgName": MSG_NAMES.get(event_type, f"event_{event_type}")}
    if event_type in (40, 30):
        details["status"] = 0
    payload: dict[str, Any] = {"cname": "room", "uid": "1001", "sendts": 1_700_000_000_000,
                               "serviceType": 1, "details": details}
    if sid is not None:
        payload["sid"] = sid
    if sequence is not None:
        payload["sequence"] = sequence
    envelope = {
        "noticeId": notice_id or uuid.uuid4().hex,
        "productId": product_id,
        "eventType": event_type,
        "notifyMs": notify_ms if notify_ms is not None else int(time.time() * 1000),
        "payload": payload,
    }
    return json.dumps(envelope, separators=(",", ":")).encode()


def meta(origin: str | None = None) -> inbox.ReceiveMeta:
    return inbox.ReceiveMeta(received_ms=int(time.time() * 1000), signature="v2",
                             secret_index=0, remote_addr="127.0.0.1",
                             request_id=uuid.uuid4().hex, origin=origin)


def store(client: redis.Redis, raw: bytes, origin: str | None = None) -> str:
    return inbox.store(client, raw, meta(origin))
