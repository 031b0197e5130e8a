"""Per-recording dedupe and ordering, decided atomically in Redis.

A thin typed layer over the Lua scripts in ``workers/lua`` (their headers explain
the state they keep). Every method comes in two forms: ``q_<op>`` queues the call
on a pipeline (used in batches by the intake and the handler tasks) and its result
is read with the matching ``parse_*`` function; ``<op>`` runs it at once. Times
are unix milliseconds; ``now_ms=0`` lets Redis use its own clock (the default in
production, so that every host agrees), tests pass their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from agora_callbacks import keys
from workers import scripts
from workers.scripts import Pipe

#: One final Redis command of a publish: (command, key, value), e.g. ("lpush",
#: queue, message); see ``workers.outbox``.
Push = tuple[str, Any, Any]


def recording_keys(sid: str) -> list[str]:
    """KEYS of the per-recording scripts, in the order ``_lib.lua`` expects."""
    return [
        keys.recording_dedupe(sid),
        keys.recording_order(sid),
        keys.recording_buffer(sid),
        keys.recording_events(sid),
        keys.recording_turn(sid),
    ]


def member_of(sequence: int, field: str) -> str:
    """Name of one admitted event in the recording's buffer."""
    return f"{sequence}|{field}"


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
            if "," in name or "\n" in name:
                raise ValueError(f"handler name {name!r} may not contain ',' or a newline")
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

    ``kind``: ``event`` (dispatch ``handlers`` for ``member``), ``lost`` (the turn's
    handlers never reported: dead-letter them and end the turn with ``lost``),
    ``busy``, ``wait`` or ``none``. ``due_ms``: when to look at the recording again
    (0: no need). ``skipped``: events taken that had no handler. ``token``: of an
    ``event`` or ``lost`` turn, this take's token, which its ``commit`` (or
    ``lost``) must present (a later take of the same turn has another one).
    """

    kind: str
    due_ms: int
    member: str = ""
    record: Record | None = None
    late: bool = False
    gap: tuple[int, int] | None = None
    skipped: int = 0
    handlers: tuple[str, ...] = ()
    token: int = 0

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
    if kind not in ("event", "lost"):
        return Turn(kind=kind, due_ms=int(reply[1]), skipped=int(reply[6]) if len(reply) > 6
                    else 0)
    return Turn(
        kind=kind,
        due_ms=int(reply[1]),
        member=_text(reply[2]),
        record=Record.decode(reply[3]),
        late=_text(reply[4]) == "1",
        gap=parse_gap(_text(reply[5])),
        skipped=int(reply[6]),
        token=int(reply[7]),
        handlers=tuple(sorted(_text(h) for h in reply[8:])),
    )


@dataclass(frozen=True)
class Admitted:
    """Outcome of ``admit``: ``status`` is ``admitted``, ``again`` or ``dup``."""

    status: str
    turn: Turn | None


def parse_admit(reply: Sequence[Any]) -> Admitted:
    status = _text(reply[0])
    return Admitted(status, parse_turn(reply[1:]) if status != "dup" else None)


@dataclass(frozen=True)
class Finished:
    """Outcome of ``finish``: ``status`` is ``stale``, ``pending`` or ``next``."""

    status: str
    turn: Turn | None


def parse_finish(reply: Sequence[Any]) -> Finished:
    status = _text(reply[0])
    return Finished(status, parse_turn(reply[1:]) if status == "next" else None)


@dataclass(frozen=True)
class Lost:
    """Outcome of ``lost``: ``status`` is ``stale`` (the turn was no longer this
    take's: nothing done) or ``next`` (``handlers`` dead-lettered, the turn ended,
    ``turn`` is the recording's next one)."""

    status: str
    handlers: tuple[str, ...]
    turn: Turn | None


def parse_lost(reply: Sequence[Any]) -> Lost:
    status = _text(reply[0])
    if status != "next":
        return Lost(status, (), None)
    n = int(reply[1])
    return Lost(status, tuple(_text(h) for h in reply[2:2 + n]), parse_turn(reply[2 + n:]))


@dataclass(frozen=True)
class Ordering:
    """The ordering scripts with their parameters (from Settings)."""

    ttl_s: int
    hold_ms: int
    lease_ms: int
    deadline_ms: int

    def _common(self, now_ms: int) -> list[Any]:
        return [now_ms, self.ttl_s, self.hold_ms, self.lease_ms]

    # -- queued forms -------------------------------------------------------------
    def q_admit(self, pipe: Pipe, sid: str, field: str, sequence: int, entry_id: str,
                record: Record, now_ms: int = 0) -> object:
        args = [*self._common(now_ms), field, member_of(sequence, field), sequence, entry_id,
                record.encode()]
        return scripts.evalsha(pipe, "admit", recording_keys(sid), args)

    def q_take(self, pipe: Pipe, sid: str, now_ms: int = 0) -> object:
        return scripts.evalsha(pipe, "take", recording_keys(sid), self._common(now_ms))

    def q_commit(self, pipe: Pipe, sid: str, member: str, token: int,
                 pushes: Sequence[Push] = (), now_ms: int = 0) -> object:
        """Queue the commit of the turn of ``member`` taken with ``token``; the
        ``pushes`` (the final commands of its handler tasks' publishes, see
        ``workers.outbox``) are sent by the same script if, and only if, the commit
        is accepted (reply: the new deadline, or 0)."""
        args: list[Any] = [*self._common(now_ms), member, self.deadline_ms, token]
        for name, _, value in pushes:
            args += [name, value]
        return scripts.evalsha(pipe, "commit",
                               [*recording_keys(sid), *(key for _, key, _ in pushes)], args)

    def q_lost(self, pipe: Pipe, sid: str, member: str, token: int, maxlen: int,
               fields: Mapping[str, Any], now_ms: int = 0) -> object:
        """Queue the end of the lost turn of ``member`` taken with ``token``: one dead
        letter (``fields``, see ``deadletters.entry_fields``, with each handler's
        name) per handler still pending, then the next take; only if the turn is
        still this take's (see ``lost.lua``; read the reply with ``parse_lost``)."""
        args: list[Any] = [*self._common(now_ms), member, token, maxlen]
        for name, value in fields.items():
            if name != "handler":
                args += [name, value]
        return scripts.evalsha(pipe, "lost", [*recording_keys(sid), keys.DEADLETTERS,
                                              keys.COUNTERS], args)

    def q_start(self, pipe: Pipe, sid: str, member: str, handler: str,
                now_ms: int = 0) -> object:
        args = [*self._common(now_ms), member, handler, self.deadline_ms]
        return scripts.evalsha(pipe, "start", recording_keys(sid), args)

    def q_finish(self, pipe: Pipe, sid: str, member: str, handlers: Sequence[str],
                 now_ms: int = 0) -> object:
        args = [*self._common(now_ms), member, *handlers]
        return scripts.evalsha(pipe, "finish", recording_keys(sid), args)

    # -- immediate forms ----------------------------------------------------------
    def admit(self, client: redis.Redis, sid: str, field: str, sequence: int, entry_id: str,
              record: Record, now_ms: int = 0) -> Admitted:
        return parse_admit(_one(client, lambda p: self.q_admit(
            p, sid, field, sequence, entry_id, record, now_ms)))

    def take(self, client: redis.Redis, sid: str, now_ms: int = 0) -> Turn:
        return parse_turn(_one(client, lambda p: self.q_take(p, sid, now_ms)))

    def commit(self, client: redis.Redis, sid: str, member: str, token: int,
               pushes: Sequence[Push] = (), now_ms: int = 0) -> int:
        return int(_one(client, lambda p: self.q_commit(p, sid, member, token, pushes,
                                                        now_ms)))

    def lost(self, client: redis.Redis, sid: str, member: str, token: int, maxlen: int,
             fields: Mapping[str, Any], now_ms: int = 0) -> Lost:
        return parse_lost(_one(client, lambda p: self.q_lost(
            p, sid, member, token, maxlen, fields, now_ms)))

    def start(self, client: redis.Redis, sid: str, member: str, handler: str,
              now_ms: int = 0) -> bool:
        return bool(_one(client, lambda p: self.q_start(p, sid, member, handler, now_ms)))

    def finish(self, client: redis.Redis, sid: str, member: str, handlers: Sequence[str],
               now_ms: int = 0) -> Finished:
        return parse_finish(_one(client, lambda p: self.q_finish(
            p, sid, member, handlers, now_ms)))


def _one(client: redis.Redis, call: scripts.Call) -> Any:
    result = scripts.run(client, [call])[0]
    if isinstance(result, Exception):
        raise result
    return result


def claim_notice(pipe: Pipe, notice_id: str, entry_id: str, ttl_s: int) -> object:
    """Queue the noticeId claim of an unordered event (reply: new, again, dup)."""
    return scripts.evalsha(pipe, "claim_notice", [keys.notice_dedupe(notice_id)],
                           [entry_id, ttl_s])


def settle_entry(pipe: Pipe, consumer: str, entry_id: str, pushes: Sequence[Push] = (),
                 counts: Mapping[str, int] | None = None) -> object:
    """Queue the settling of an unordered event's inbox entry (``settle_entry.lua``):
    send ``pushes`` (its handler tasks' final commands, see ``workers.outbox``),
    add ``counts`` to the counters, acknowledge and delete the entry, if, and only
    if, ``consumer`` still owns the entry (reply: 1, or 0 and nothing done)."""
    counted = [(name, n) for name, n in (counts or {}).items() if n]
    args: list[Any] = [keys.INBOX_GROUP, consumer, entry_id, len(counted)]
    for name, n in counted:
        args += [name, n]
    for command, _, value in pushes:
        args += [command, value]
    return scripts.evalsha(pipe, "settle_entry",
                           [keys.INBOX, keys.COUNTERS, *(key for _, key, _ in pushes)], args)
