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


# -- the ordering protocol under a clock the test drives ------------------------------
class VirtualClock:
    """A clock the test drives (``workers.ordering.clock`` protocol): the scripts and
    the Python side read the same virtual unix milliseconds; ``sleep`` advances it
    without waiting."""

    def __init__(self, start_ms: int | None = None) -> None:
        self.ms = int(time.time() * 1000) if start_ms is None else start_ms

    def script_ms(self) -> int:
        return self.ms

    def now_ms(self, client: Any = None) -> int:
        return self.ms

    def sleep(self, seconds: float) -> None:
        self.ms += max(1, int(seconds * 1000))

    def monotonic(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> int:
        self.ms += ms
        return self.ms


class Published:
    """A ``Runtime.publish`` that collects what would be sent: one (handler name,
    task args) per task."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, list[Any]]] = []

    def __call__(self, names: Any, args: list[Any]) -> None:
        for name in names:
            self.tasks.append((name, list(args)))

    def keys(self) -> list[str]:
        """The dedupe key (``key=``) of each task, in publish order."""
        return [args[2] for _, args in self.tasks]

    def count(self, key: str) -> int:
        return self.keys().count(key)

    def last(self, key: str) -> list[Any]:
        return [args for _, args in self.tasks if args[2] == key][-1]


def pending_entry(client: redis.Redis, consumer: str = "c") -> str:
    """A new inbox entry, read (pending) by ``consumer`` of the workers' group: what
    ``admit`` and ``settle_entry`` acknowledge."""
    from agora_callbacks import keys

    try:
        client.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    entry = client.xadd(keys.INBOX, {"b": "x"})
    client.xreadgroup(keys.INBOX_GROUP, consumer, {keys.INBOX: ">"}, count=1000)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def expected_due(client: redis.Redis, sid: str, hold_ms: int) -> int | None:
    """When the recording is next due according to its state alone (PROTOCOL.md,
    "States"): the earliest handler deadline, and the publish lease while a handler
    has not started, during a turn; the oldest buffered arrival + the hold while
    waiting; None when idle."""
    from agora_callbacks import keys

    order = {k.decode(): v.decode() for k, v in client.hgetall(keys.recording_order(sid)).items()}
    if "cur" in order:
        slots = [v.decode().split("|") for v in client.hvals(keys.recording_turn(sid))]
        due = min(int(deadline) for _, deadline in slots)
        if any(owner == "-" for owner, _ in slots):
            due = min(due, int(order["pl"]))
        return due
    oldest: Any = client.zrange(keys.recording_arrivals(sid), 0, 0, withscores=True)
    if not oldest:
        assert client.zcard(keys.recording_buffer(sid)) == 0
        return None
    return int(oldest[0][1]) + hold_ms


def timer_of(client: redis.Redis, sid: str) -> int | None:
    from agora_callbacks import keys

    score = client.zscore(keys.TIMERS, sid)
    return None if score is None else int(score)


def assert_timer(client: redis.Redis, sid: str, hold_ms: int) -> int | None:
    """The recording's timer is exactly the due time of its state (or absent when
    idle); return it."""
    due = expected_due(client, sid, hold_ms)
    assert timer_of(client, sid) == due, (sid, timer_of(client, sid), due)
    return due


def pause_all(url: str, ms: int) -> None:
    """``CLIENT PAUSE <ms> ALL`` from a connection of its own: every client of the
    server waits (the session's server: never the shared one)."""
    pauser = redis.Redis.from_url(url)
    pauser.execute_command("CLIENT", "PAUSE", ms, "ALL")
    pauser.close()


def await_answering(url: str, timeout: float = 10.0) -> None:
    """Wait until the server answers again (a pause is over)."""
    probe = redis.Redis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if probe.ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.02)
    finally:
        probe.close()
