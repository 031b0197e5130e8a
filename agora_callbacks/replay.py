"""Re-injecting stored raw bodies into the pipeline, and the export format.

A re-injected body goes into the inbox like one the ingress stored, with
``ReceiveMeta.origin`` set (``replay:<file>``, or ``dlq:<id>`` for a dead letter's
requeue): the workers then skip the stale-replay check, and deduplication still
applies, so replaying an event that was already handled is harmless.

Export format (``agora-callbacks dlq export``), one JSON object per line::

    {"id": "<dead letter id>", "kind": "body", "reason": "...", "detail": "...",
     "at_ms": 1700000000000, "meta": {...}, "key": "", "handler": "", "exception": "",
     "body": "<the raw body, when it is UTF-8>"}        # or "body_b64": "<base64>"

``read_bodies`` accepts that format, and also files of raw NCS bodies, one per
line (what a request log or a capture gives), told apart line by line. An export
line whose ``body_b64`` is not base64 stops the reading (``BadLine``): ``inject``
has then injected every line before it. An export line of a ``hook`` dead letter
holds a recording's record, not an event: it is skipped (``on_skip``), never
injected (``agora-callbacks dlq requeue`` re-runs the hook).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import redis

from agora_callbacks import deadletters, inbox, keys
from agora_callbacks.deadletters import DeadLetter

BATCH = 500
#: Dead letter kinds whose body is no event: an export line of one is not replayed.
NOT_EVENTS = (deadletters.HOOK,)


@dataclass(frozen=True)
class Replayable:
    """One body to re-inject, with where it came from (line number or dead letter id)."""

    body: bytes
    source: str


def export_record(letter: DeadLetter) -> dict[str, Any]:
    """The export line of one dead letter: everything kept, the body byte-exact."""
    record = letter.as_dict()
    try:
        record["body"] = letter.body.decode("utf-8")
    except UnicodeDecodeError:
        del record["body"]
        record["body_b64"] = base64.b64encode(letter.body).decode("ascii")
    return record


def write_export(letters: Iterable[DeadLetter], out: IO[str]) -> int:
    """Write ``letters`` as JSON lines; return how many."""
    n = 0
    for letter in letters:
        out.write(json.dumps(export_record(letter), separators=(",", ":"),
                             ensure_ascii=False) + "\n")
        n += 1
    return n


def _is_export_record(value: Any) -> bool:
    return isinstance(value, dict) and ("body" in value or "body_b64" in value) \
        and "payload" not in value and "kind" in value


class BadLine(ValueError):
    """An export line whose body cannot be read (``body_b64`` not base64)."""

    def __init__(self, number: int, why: str) -> None:
        super().__init__(f"line {number}: {why}")
        self.number = number


def _no_skip_report(source: str, kind: str) -> None:
    return None


def read_bodies(lines: Iterable[bytes],
                on_skip: Callable[[str, str], None] = _no_skip_report) -> Iterator[Replayable]:
    """Bodies from export lines or raw body lines; blank lines are skipped.

    A raw body line is kept byte for byte (without its line ending). A line that is
    neither valid JSON nor an export record is still a raw body: the workers will
    dead-letter it with its reason, as they would have at first. An export line of
    a kind in ``NOT_EVENTS`` is not a body: ``on_skip(source, kind)`` is called
    for it instead.
    """
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if _is_export_record(value):
            if value["kind"] in NOT_EVENTS:
                on_skip(str(value.get("id") or f"line {number}"), str(value["kind"]))
                continue
            if "body_b64" in value:
                encoded = value["body_b64"]
                try:
                    body = base64.b64decode(encoded if isinstance(encoded, str) else b"?",
                                            validate=True)
                except ValueError:
                    raise BadLine(number, "body_b64 is not base64") from None
            else:
                body = str(value["body"]).encode("utf-8")
            yield Replayable(body, str(value.get("id") or f"line {number}"))
        else:
            yield Replayable(line, f"line {number}")


def inject(client: redis.Redis, bodies: Iterable[Replayable], origin: str) -> list[str]:
    """Append every body to the inbox marked with ``origin``, in pipelined batches;
    return the inbox entry ids in order."""
    ids: list[str] = []
    batch: list[Replayable] = []

    def flush() -> None:
        if not batch:
            return
        pipe = client.pipeline(transaction=False)
        now = int(time.time() * 1000)
        for item in batch:
            meta = inbox.ReceiveMeta(received_ms=now, signature="replay", secret_index=-1,
                                     remote_addr="", request_id=f"replay-{uuid.uuid4().hex}",
                                     origin=origin)
            pipe.xadd(keys.INBOX, inbox.fields_for(item.body, meta))
        ids.extend(i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute())
        batch.clear()

    try:
        for item in bodies:
            batch.append(item)
            if len(batch) >= BATCH:
                flush()
    except BadLine:
        flush()  # every line before the bad one is in the inbox, none after it
        raise
    flush()
    return ids
