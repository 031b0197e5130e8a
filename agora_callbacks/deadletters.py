"""Dead letters: everything that could not be handled, kept with its reason.

A Redis Stream (``keys.DEADLETTERS``), trimmed to ``DEADLETTER_MAXLEN`` entries;
the stream entry id is the dead letter's id. Three kinds:

- ``body``: a stored body that never became a dispatchable event (not JSON, not a
  valid event, a stale replay). Requeueing puts the raw bytes back in the inbox,
  marked as re-injected; deduplication still applies.
- ``handler``: a handler that exhausted its retries (or never finished) on an
  event. The raw body, the handler's task name and the exception are kept.
- ``hook``: a lifecycle hook (``@on_recording``) that failed for good on a
  recording's phase. The body is the record (JSON) the hook got; ``extra`` holds
  ``sid``, ``phase`` and ``info``; the hook's task name and the exception are kept.
  Requeueing runs the hook again with that record (``redrive.redrive_hook``).

Every dead letter carries its bytes (a raw body, or a hook's record), the reason,
the receive metadata (none for a hook) and the time, so nothing is lost and
everything can be replayed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from agora_callbacks import inbox, keys, metrics

BODY = "body"
HANDLER = "handler"
HOOK = "hook"
KINDS = (BODY, HANDLER, HOOK)
#: What a dead letter id (a stream entry id) looks like, for messages.
ID_EXAMPLE = "1700000000000-0"
_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")


def is_id(value: str) -> bool:
    """Whether ``value`` has the form of a dead letter id (``ID_EXAMPLE``)."""
    match = _ID.match(value)
    return match is not None and all(int(part) < 2**64 for part in match.groups())


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as stored."""

    id: str
    kind: str
    reason: str
    detail: str
    body: bytes
    meta: dict[str, Any]
    at_ms: int
    key: str = ""
    handler: str = ""
    exception: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_stream(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> DeadLetter:
        def text(name: str) -> str:
            return fields.get(name.encode(), b"").decode("utf-8", "replace")

        def obj(name: str) -> dict[str, Any]:
            raw = fields.get(name.encode())
            if not raw:
                return {}
            try:
                value = json.loads(raw)
            except ValueError:
                return {}
            return value if isinstance(value, dict) else {}

        return cls(
            id=entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            kind=text("kind"),
            reason=text("reason"),
            detail=text("detail"),
            body=fields.get(b"body", b""),
            meta=obj("meta"),
            at_ms=int(fields.get(b"at", b"0") or 0),
            key=text("key"),
            handler=text("handler"),
            exception=text("exc"),
            extra=obj("extra"),
        )

    @property
    def sid(self) -> str:
        """The recording this letter belongs to ("" when none is known): a ``hook``
        letter's ``extra``, else its body's (``body_fields``)."""
        if self.kind == HOOK:
            return str(self.extra.get("sid") or "")
        return str(body_fields(self.body).get("sid") or "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (the body as text, replacement characters where not UTF-8)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "reason": self.reason,
            "detail": self.detail,
            "body": self.body.decode("utf-8", "replace"),
            "meta": self.meta,
            "at_ms": self.at_ms,
            "key": self.key,
            "handler": self.handler,
            "exception": self.exception,
            "extra": self.extra,
        }


def body_fields(body: bytes) -> dict[str, Any]:
    """``sid``, ``sequence`` and ``event_type`` of a callback body, as far as it parses
    (``payload.sid``, where NCS puts it, before a top-level ``sid``). A body nested
    too deeply for ``json`` (a ``too_deep`` letter) has none."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    if not isinstance(value, dict):
        return {}
    payload = value.get("payload")
    if not isinstance(payload, dict):
        payload = {}
    out = {"sid": payload.get("sid", value.get("sid")), "sequence": payload.get("sequence"),
           "event_type": value.get("eventType")}
    return {k: v for k, v in out.items() if v is not None}


def entry_fields(
    *,
    kind: str,
    reason: str,
    detail: str,
    body: bytes,
    meta: Mapping[str, Any],
    key: str = "",
    handler: str = "",
    exception: str = "",
    extra: Mapping[str, Any] | None = None,
    now_ms: int | None = None,
) -> dict[Any, Any]:
    """Stream fields of one dead letter; use with ``add`` or inside a pipeline."""
    return {
        "kind": kind,
        "reason": reason,
        "detail": detail,
        "body": body,
        "meta": json.dumps(dict(meta), separators=(",", ":")),
        "at": now_ms if now_ms is not None else int(time.time() * 1000),
        "key": key,
        "handler": handler,
        "exc": exception,
        "extra": json.dumps(dict(extra or {}), separators=(",", ":"), default=str),
    }


def add(client: redis.Redis | redis.client.Pipeline, maxlen: int, **kwargs: Any) -> Any:
    """Append a dead letter (see ``entry_fields`` for the arguments); return its id
    (or, in a pipeline, queue it). Counted in ``acb_deadlettered_total{kind,reason}``."""
    metrics.DEADLETTERED.labels(kwargs.get("kind", ""), kwargs.get("reason", "")).inc()
    return client.xadd(keys.DEADLETTERS, entry_fields(**kwargs), maxlen=maxlen, approximate=True)


def list_(client: redis.Redis, count: int = 50, after: str = "-") -> list[DeadLetter]:
    """Oldest first, ``count`` at most, starting after id ``after`` (exclusive)."""
    start = "-" if after == "-" else f"({after}"
    rows: Any = client.xrange(keys.DEADLETTERS, start, "+", count)
    return [DeadLetter.from_stream(i, f) for i, f in rows]


#: Most letters ``newest`` reads for one answer.
SCAN_LIMIT = 5000
_BATCH = 500


def newest(client: redis.Redis, matches: Callable[[DeadLetter], bool], limit: int, *,
           before: str = "", scan_limit: int = SCAN_LIMIT) -> tuple[list[DeadLetter], str]:
    """Up to ``limit`` letters that ``matches``, newest first, from before id ``before``
    (exclusive; "" from the newest), reading at most ``scan_limit`` letters. Also
    returns where to go on (``before`` of the next call; "" when no letter is left):
    the last letter returned when ``limit`` were found, else the last one read."""
    found: list[DeadLetter] = []
    top = f"({before}" if before else "+"
    scanned = 0
    while scanned < scan_limit:
        asked = min(_BATCH, scan_limit - scanned)
        rows: Any = client.xrevrange(keys.DEADLETTERS, top, "-", count=asked)
        for entry_id, fields in rows or []:
            letter = DeadLetter.from_stream(entry_id, fields)
            scanned += 1
            top = f"({letter.id}"
            if matches(letter):
                found.append(letter)
                if len(found) == limit:
                    return found, letter.id
        if len(rows or []) < asked:
            return found, ""
    return found, top[1:]


def get(client: redis.Redis, dead_letter_id: str) -> DeadLetter | None:
    rows: Any = client.xrange(keys.DEADLETTERS, dead_letter_id, dead_letter_id, 1)
    return DeadLetter.from_stream(*rows[0]) if rows else None


def count(client: redis.Redis) -> int:
    return int(client.xlen(keys.DEADLETTERS))


def delete(client: redis.Redis, dead_letter_id: str) -> bool:
    return bool(client.xdel(keys.DEADLETTERS, dead_letter_id))


class RequeuedAlready(Exception):
    """The dead letter was requeued already (or is being requeued)."""


#: Remove the dead letter (KEYS[1], ARGV[1]); only if it was still there, append
#: the body's fields (ARGV[2:]) to the inbox (KEYS[2]) and return the entry id.
_REQUEUE_BODY = """
if redis.call('XDEL', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
"""


def requeue_body(client: redis.Redis, letter: DeadLetter) -> str:
    """Put a dead letter's raw body back in the inbox and remove the dead letter,
    atomically. The body is marked as re-injected (``origin``) so the stale-replay
    check does not refuse it again; deduplication still applies. A letter no longer
    there (requeued by another command since it was read) is not injected again:
    ``RequeuedAlready``."""
    meta = inbox.ReceiveMeta(
        received_ms=int(time.time() * 1000),
        signature="replay",
        secret_index=int(letter.meta.get("secret_index", -1)),
        remote_addr=str(letter.meta.get("remote_addr", "")),
        request_id=str(letter.meta.get("request_id", "")),
        origin=f"dlq:{letter.id}",
    )
    fields = [part for pair in inbox.fields_for(letter.body, meta).items() for part in pair]
    entry_id = client.register_script(_REQUEUE_BODY)(
        keys=[keys.DEADLETTERS, keys.INBOX], args=[letter.id, *fields])
    if entry_id is None:
        raise RequeuedAlready(f"dead letter {letter.id} was requeued already")
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
