"""Per-recording dedupe and ordering, decided atomically in Redis.

A thin typed layer over the Lua scripts in ``lua/`` (``PROTOCOL.md`` beside this
file lists the states and transitions). Every operation comes in two forms:
``q_<op>`` queues the call on a pipeline (used in batches by the intake and the
sweep) and its result is read with the matching ``parse_*`` function; ``<op>``
runs it at once. Times are unix milliseconds read from ``clock`` (Redis's own
clock in production, a clock the test drives in the simulation).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError

from agora_callbacks import keys, recording_timeline, recordings_index
from agora_callbacks.workers.ordering import scripts
from agora_callbacks.workers.ordering.clock import RedisClock
from agora_callbacks.workers.ordering.scripts import Pipe


def recording_keys(sid: str) -> list[str]:
    """KEYS of the per-recording scripts, in the order ``_lib.lua`` expects."""
    return [
        keys.recording_dedupe(sid),
        keys.recording_order(sid),
        keys.recording_buffer(sid),
        keys.recording_events(sid),
        keys.recording_turn(sid),
        keys.recording_arrivals(sid),
        keys.TIMERS,
        keys.COUNTERS,
        keys.DEADLETTERS,
        keys.INBOX,
        keys.recording_state(sid),
        keys.recording_timeline(sid),
        recordings_index.flag_index("deadletters"),
    ]


def member_of(sequence: int, field: str) -> str:
    """Name of one admitted event in the recording's buffer."""
    return f"{sequence}|{field}"


def sequence_of(member: str) -> int | None:
    head = member.partition("|")[0]
    return int(head) if head.lstrip("-").isdigit() else None


@dataclass(frozen=True)
class Record:
    """An admitted event as kept in the recording's events hash until its turn ends."""

    handlers: tuple[str, ...]
    key: str
    meta: dict[str, Any]
    entry_id: str
    body: bytes
    notice_id: str = ""

    def encode(self) -> bytes:
        for name in self.handlers:
            if "," in name or "\n" in name or "|" in name:
                raise ValueError(f"handler name {name!r} may not contain ',', '|' or a newline")
        header = json.dumps({"k": self.key, "m": self.meta, "e": self.entry_id,
                             "n": self.notice_id}, separators=(",", ":"))
        return ",".join(self.handlers).encode() + b"\n" + header.encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        names, header, body = raw.split(b"\n", 2)
        head = json.loads(header)
        return cls(
            handlers=tuple(n for n in names.decode().split(",") if n),
            key=head["k"], meta=head["m"], entry_id=head["e"], body=body,
            notice_id=head.get("n", ""),
        )


@dataclass(frozen=True)
class Turn:
    """What ``take`` decided for a recording (see ``_lib.lua``).

    ``kind``: ``event`` (publish the handler tasks of ``handlers`` for ``member``),
    ``busy``, ``wait`` or ``none``. ``due_ms``: when the recording is looked at
    again (its timer, set by the script itself; 0: never). ``republished``: the
    handlers are published again (none of these had started within the publish
    lease); the copies already published are fenced at their start. An ``event``
    also carries the script's clock (``now_ms``) and the recording's folded record
    as stored then (``state``, its JSON bytes; empty when there is none), which the
    publisher folds the event into (``workers.builtin.lifecycle``).
    """

    kind: str
    due_ms: int
    member: str = ""
    record: Record | None = None
    late: bool = False
    gap: tuple[int, int] | None = None
    republished: bool = False
    handlers: tuple[str, ...] = field(default=())
    now_ms: int = 0
    state: bytes = b""

    @property
    def dispatch(self) -> bool:
        return self.kind == "event"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def parse_gap(raw: str) -> tuple[int, int] | None:
    if not raw:
        return None
    first, _, last = raw.partition("-")
    return int(first), int(last)


def parse_turn(reply: Sequence[Any]) -> Turn:
    kind = _text(reply[0])
    if kind != "event":
        return Turn(kind=kind, due_ms=int(reply[1]))
    return Turn(
        kind=kind,
        due_ms=int(reply[1]),
        member=_text(reply[2]),
        record=Record.decode(reply[3]),
        late=_text(reply[4]) == "1",
        gap=parse_gap(_text(reply[5])),
        republished=_text(reply[6]) == "1",
        now_ms=int(reply[7]),
        state=reply[8] if isinstance(reply[8], bytes) else str(reply[8]).encode(),
        handlers=tuple(sorted(_text(h) for h in reply[9:])),
    )


@dataclass(frozen=True)
class Admitted:
    """Outcome of ``admit``: ``status`` is ``admitted``, ``again`` or ``dup``."""

    status: str
    turn: Turn


def parse_admit(reply: Sequence[Any]) -> Admitted:
    return Admitted(_text(reply[0]), parse_turn(reply[1:]))


@dataclass(frozen=True)
class Finished:
    """Outcome of ``finish``: ``status`` is ``stale``, ``pending`` or ``next``."""

    status: str
    turn: Turn | None


def parse_finish(reply: Sequence[Any]) -> Finished:
    status = _text(reply[0])
    return Finished(status, parse_turn(reply[1:]) if status == "next" else None)


@dataclass(frozen=True)
class Failure:
    """A handler that failed for good: its dead letter, written by ``finish``."""

    reason: str
    detail: str
    exception: str


@dataclass(frozen=True)
class Ordering:
    """The ordering scripts with their parameters (from Settings) and clock."""

    ttl_s: int
    hold_ms: int
    lease_ms: int
    deadline_ms: int
    deadletter_maxlen: int = 100_000
    clock: Any = field(default_factory=RedisClock)
    #: The dashboard's timeline (``agora_callbacks.recording_timeline``), where
    #: ``finish`` and the deadline sweep add each handler run that ended: its
    #: expiry (``RECORD_TTL_S``; 0: no timeline) and how many members it keeps.
    timeline_ttl_s: int = 0
    timeline_max: int = recording_timeline.MAX_ENTRIES

    def _common(self, sid: str) -> list[Any]:
        # A recording of one event without sid/sequence (notice:<id>) has no timeline.
        timeline_ttl = 0 if keys.is_unordered_sid(sid) else self.timeline_ttl_s
        return [self.clock.script_ms(), self.ttl_s, self.hold_ms, self.lease_ms,
                self.deadline_ms, self.deadletter_maxlen, sid, keys.INBOX_GROUP,
                timeline_ttl, self.timeline_max]

    # -- queued forms -------------------------------------------------------------
    def q_admit(self, pipe: Pipe, sid: str, field: str, sequence: int, entry_id: str,
                record: Record) -> object:
        args = [*self._common(sid), field, member_of(sequence, field), sequence, entry_id,
                record.encode()]
        return scripts.evalsha(pipe, "admit", recording_keys(sid), args)

    def q_take(self, pipe: Pipe, sid: str) -> object:
        return scripts.evalsha(pipe, "take", recording_keys(sid), self._common(sid))

    def q_start(self, pipe: Pipe, sid: str, member: str, handler: str, task_id: str) -> object:
        args = [*self._common(sid), member, handler, task_id]
        return scripts.evalsha(pipe, "start", recording_keys(sid), args)

    def q_finish(self, pipe: Pipe, sid: str, member: str, handler: str, task_id: str,
                 failure: Failure | None = None, *, duration_ms: float | None = None,
                 run: bool = True) -> object:
        """``duration_ms``: how long the handler ran, for the run's timeline member;
        ``run``: False for a slot that is not a handler run (the fold's own)."""
        dead = [failure.reason, failure.detail, failure.exception] if failure else ["", "", ""]
        ms = "" if duration_ms is None else f"{duration_ms:.2f}"
        args = [*self._common(sid), member, handler, task_id, *dead, "1" if run else "0", ms]
        return scripts.evalsha(pipe, "finish", recording_keys(sid), args)

    # -- immediate forms ----------------------------------------------------------
    def admit(self, client: redis.Redis, sid: str, field: str, sequence: int, entry_id: str,
              record: Record) -> Admitted:
        return parse_admit(_one(client, lambda p: self.q_admit(
            p, sid, field, sequence, entry_id, record)))

    def take(self, client: redis.Redis, sid: str) -> Turn:
        return parse_turn(_one(client, lambda p: self.q_take(p, sid)))

    def start(self, client: redis.Redis, sid: str, member: str, handler: str,
              task_id: str) -> bool:
        return bool(_one(client, lambda p: self.q_start(p, sid, member, handler, task_id)))

    def finish(self, client: redis.Redis, sid: str, member: str, handler: str, task_id: str,
               failure: Failure | None = None, *, duration_ms: float | None = None,
               run: bool = True) -> Finished:
        return parse_finish(_one(client, lambda p: self.q_finish(
            p, sid, member, handler, task_id, failure, duration_ms=duration_ms, run=run)))


def _one(client: redis.Redis, call: scripts.Call) -> Any:
    """Run one script call at once (no pipeline: one command, less overhead); a
    ``NOSCRIPT`` reply (the script cache was flushed) loads the scripts and runs the
    call again (a script that failed with ``NOSCRIPT`` did nothing)."""
    try:
        return call(client)
    except NoScriptError:
        scripts.load_all(client)
        return call(client)


# -- inbox entries without a turn ------------------------------------------------------
def q_settle_entry(pipe: Pipe, entry_id: str, counts: Mapping[str, int] | None = None,
                   dead_letter: Mapping[str, Any] | None = None, maxlen: int = 0) -> object:
    """Queue the settling of an inbox entry that has no turn, a body dead-lettered
    (``settle_entry.lua``):
    acknowledge and delete it and, only if this call acknowledged it, add
    ``counts`` to the counters and write ``dead_letter`` (stream fields, see
    ``deadletters.entry_fields``). Reply: 1, or 0 (settled before: nothing written)."""
    counted = [(name, n) for name, n in (counts or {}).items() if n]
    args: list[Any] = [keys.INBOX_GROUP, entry_id, len(counted)]
    for name, n in counted:
        args += [name, n]
    if dead_letter:
        args += ["maxlen", maxlen]
        for name, value in dead_letter.items():
            args += [name, value]
    return scripts.evalsha(pipe, "settle_entry",
                           [keys.INBOX, keys.COUNTERS, keys.DEADLETTERS], args)

