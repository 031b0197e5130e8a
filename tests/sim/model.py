"""What the simulation knows happened, and the promises checked against it.

Ground truth comes from three places: the bodies the test stored (and their
entry ids), the handler runs the simulated executors performed (a run starts
when ``handler_start`` let it; it ends when ``handler_done`` is called, when it
retries, or when its executor dies), and every ordering script Redis applied,
with its true reply (reported by the faulty client even when the caller saw an
error).

Checked after every step (``check_step``, Redis is then between two scripts):

- ``timer``: every recording with a current turn or buffered events has a timer in
  ``acb:timers`` no later than its next due time (``PROTOCOL.md``: exactly that
  time), and an idle recording has none;
- ``ttl``: every key expires, except the global bounded ones;
- ``ack``: an inbox entry whose script applied (``admit``, ``settle_entry``) is
  acknowledged: its outcome and its acknowledgement are one atomic step;

and at every handler start (``granted``):

- ``fence``: a handler of an event starts under one task id (other task ids are
  copies; the same task id may run again: a Celery retry, a redelivery);
- ``once``: ...but not once its outcome is recorded (``finish`` applied): a
  redelivery after the finish is skipped;
- ``overlap``: no handler of a recording starts while a handler of another event
  of that recording is running, unless that run is past ``HANDLER_DEADLINE_S``
  (then it was dead-lettered as lost, and the recording moved on, by design) or
  its task was already reported done by another copy of the same task;
- ``order``: no handler starts after a handler of a later sequence of its
  recording started, unless its event is flagged ``late`` (it arrived after its
  successors had their turn; dispatched late by design).

and by the simulation (``world.py``) as each operation ends:

- ``crash``: no operation fails on anything but a Redis or a broker error;
- ``retry``: a handler's start or finish gives up on Redis only after trying for
  ``REDIS_RETRY_S``.

When the run has settled (``check_settled``): no inbox entry left, no buffered
event, no turn, no timer, no message in the broker; every stored body has
exactly one outcome: a body dead letter (invalid, stale), a duplicate of the
entry that claimed its event, or the claiming entry, whose event had each of its
handlers finished once (``finish`` applied) or dead-lettered once as ``lost``;
the counters add up; the dashboard's timeline of each recording shows each of
those handler outcomes once, and each event whose fold Redis holds once
(``timeline``: written in the same scripts as the facts).

A Redis rollback (restart from a state up to a second old) legitimately breaks
some of this; ``rollback`` weakens exactly that, and only for what happened after
the snapshot the server restarted from:

- a body stored after the snapshot is gone (the ingress had answered 200: the
  loss appendfsync everysec allows); it needs no outcome;
- an entry settled after the snapshot is pending again and is taken in again: its
  dedupe claim, its turn and its handler starts are forgotten by Redis, so its
  handlers may start again under new task ids (the grants after the snapshot no
  longer count for ``fence``, ``overlap`` and ``order``), and a ``finish`` applied
  after the snapshot no longer counts as the outcome (Redis does not have it);
- a ``finish`` lost that way leaves its handler started by a task that already
  ran to completion: its deadline dead-letters it as ``lost`` (which then is its
  one outcome). (Workers before 9adf9bf handled an event without ``sid`` outside
  any recording, with no deadline: there a handler that ran to completion and
  whose start or finish record a rollback lost is accepted as done);
- the counters lose the increments after the snapshot: they are not compared.

Events without ``sid``/``sequence`` are checked as the workers handle them: as
the only event of a recording of its own (``keys.unordered_sid``).

The gentle fault mix (``Rates.gentle``) has no fault that may legitimately make a
handler miss its deadline, so there a ``lost`` dead letter is a ``liveness``
violation, unless some task gave up starting or reporting that handler (Redis
away past ``REDIS_RETRY_S``), the handler queue fell behind the deadline, or the
handler was published again at least once (then the faults of its publishes ate
the deadline: the simulation's deadline is 24 publish leases, production's 720,
so a few failed publishes in a row are enough here).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from agora_callbacks import keys, recordings_index
from agora_callbacks.workers.dispatch import FOLD_SLOT
from agora_callbacks.workers.ordering import member_of, sequence_of

from .traffic import MSG_NAMES, Sent

T0_MS = 1_900_000_000_000
#: Keys without an expiry, each bounded by a trim rule: the inbox (XACK+XDEL, MAXLEN),
#: dead letters (MAXLEN), the timer sets (one member per recording with work),
#: counters (fixed fields) and the dashboard's index sets (``recordings_index.prune``).
GLOBAL_KEYS = {keys.INBOX, keys.DEADLETTERS, keys.TIMERS, keys.COUNTERS,
               keys.LIFECYCLE_TIMERS, *recordings_index.TRIMMED_KEYS}
GLOBAL_KEYS_ARGS = sorted(GLOBAL_KEYS)

#: Reads what the step invariants need (test-side, read-only). ARGV: the timers key,
#: the inbox key, its group, the number of global keys, the global keys, then (sid,
#: its key prefix) pairs. Reply: {keys without expiry, pending inbox entries (XPENDING
#: rows), then per sid {order hash, slots hash, lowest buffered {member, score},
#: oldest arrival, timer}}.
STATE_LUA = """
local global = {}
local n = tonumber(ARGV[4])
for i = 5, 4 + n do global[ARGV[i]] = true end
local nottl = {}
for _, k in ipairs(redis.call('KEYS', '*')) do
  if not global[k] and redis.call('PTTL', k) == -1 then nottl[#nottl + 1] = k end
end
local pending = {}
if redis.call('EXISTS', ARGV[2]) == 1 then
  pending = redis.call('XPENDING', ARGV[2], ARGV[3], '-', '+', 10000)
end
local out = {nottl, pending}
for i = 5 + n, #ARGV, 2 do
  local sid, p = ARGV[i], ARGV[i + 1]
  out[#out + 1] = {
    redis.call('HGETALL', p .. 'order'), redis.call('HGETALL', p .. 'slots'),
    redis.call('ZRANGE', p .. 'buffer', 0, 0, 'WITHSCORES'),
    redis.call('ZRANGE', p .. 'arrivals', 0, 0, 'WITHSCORES'),
    redis.call('ZSCORE', ARGV[1], sid) or ''}
end
return out
"""


def relevant(trace: list[str], violation: str, limit: int = 80) -> list[str]:
    """The lines of ``trace`` about what ``violation`` names (its notice ids, its
    recording's members), with every rollback and death: the story of one failure."""
    words = set(re.findall(r"n\d{6}[0-9a-f]{8}", violation))
    for sid, member in re.findall(r"\('(sid\w+)', '([^']+)'", violation):
        words.add(f"{sid}:{member.partition('|')[2]}")  # the key, in task args
        words.add(member)
    if not words:
        return trace[-limit:]
    pattern = re.compile("|".join(f"(?<![0-9]){re.escape(w)}(?![0-9])" for w in words)
                         + "|ROLLBACK|DIES|STALLS|time jump")
    return [line for line in trace if pattern.search(line)][-limit:]


def _short(reply: Any) -> str:
    if isinstance(reply, list):
        more = ",..]" if len(reply) > 4 else "]"
        return "[" + ",".join(text(r)[:30] for r in reply[:4]) + more
    return text(reply)[:40]


def _pairs(flat: list[Any]) -> dict[bytes, bytes]:
    return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}


def text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


@dataclass
class Body:
    entry_id: str
    sent: Sent
    step: int
    lost: bool = False


@dataclass
class Run:
    key: tuple[str, str, str]  # (sid or "", member or noticeId, handler)
    task: str
    late: bool
    granted_at: int
    step: int
    executor: str
    active: bool = True
    completed: bool = False
    failed: bool = False  # completed with a final failure (its dead letter is due)
    unreported: bool = False  # handler_done gave up (Redis away past REDIS_RETRY_S)
    forgotten: bool = False

    @property
    def sid(self) -> str:
        return self.key[0]

    @property
    def seq(self) -> int:
        return sequence_of(self.key[1]) or 0


@dataclass
class Model:
    deadline_ms: int
    hold_ms: int
    handlers_for: Any  # (event_type, msg_name) -> handler names
    lost_ok: bool = True  # may a handler end as a ``lost`` dead letter (see Rates)
    strict: bool = False  # known gaps count as violations too
    bodies: list[Body] = field(default_factory=list)
    runs_by_sid: dict[str, list[Run]] = field(default_factory=lambda: defaultdict(list))
    grants: dict[tuple[str, str, str], list[Run]] = field(
        default_factory=lambda: defaultdict(list))
    task_done: set[tuple[tuple[str, str, str], str]] = field(default_factory=set)
    outcomes: dict[tuple[str, str, str], list[tuple[int, str]]] = field(
        default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    rollbacks: int = 0
    step: int = 0
    now: int = 0
    seen_sids: dict[str, None] = field(default_factory=dict)  # every sid admitted
    #: handlers a task gave up starting or reporting (Redis away past REDIS_RETRY_S,
    #: or as good as: a stalled round trip counts): their deadline decides them
    gave_up: set[tuple[str, str, str]] = field(default_factory=set)
    #: how many times a take published each handler (first publish and republishes)
    publishes: dict[tuple[str, str, str], int] = field(default_factory=lambda: defaultdict(int))
    trace: list[str] = field(default_factory=list)
    known: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    forgotten_outcomes: dict[tuple[str, str, str], int] = field(
        default_factory=lambda: defaultdict(int))
    #: (sid, member) of every event a take dispatched flagged late
    taken_late: set[tuple[str, str]] = field(default_factory=set)
    #: are events folded into their recording's record (``BUILTIN_HANDLERS``)
    folds: bool = False
    #: (sid, event key) -> steps at which a fold of that event was written
    fold_steps: dict[tuple[str, str], list[int]] = field(
        default_factory=lambda: defaultdict(list))
    #: folds written after a snapshot that a rollback restored (Redis lost them)
    forgotten_folds: set[tuple[str, str]] = field(default_factory=set)
    #: inbox entry id -> the step of the first script that settled it (``admit``,
    #: ``settle_entry``): from then on it is acknowledged (``ack``)
    settled_entries: dict[str, int] = field(default_factory=dict)

    def note(self, what: str) -> None:
        """One line of the run's trace (printed for a failing seed)."""
        self.trace.append(f"{self.step:6d} t+{self.now - T0_MS:7d} {what}")

    def violate(self, kind: str, detail: str) -> None:
        self.violations.append(f"step {self.step} t={self.now} {kind}: {detail}")

    def known_gap(self, kind: str, detail: str) -> None:
        """A broken promise already reported (``KNOWN_GAPS``): counted, not a
        violation, unless ``strict`` (its scripted scenario is a strict xfail)."""
        if self.strict:
            self.violate(kind, detail)
            return
        self.known[kind] += 1
        self.note(f"KNOWN GAP {kind}: {detail}")

    # -- facts --------------------------------------------------------------------
    def stored(self, entry_id: str, sent: Sent) -> None:
        self.bodies.append(Body(entry_id, sent, self.step))
        s = sent
        self.note(f"stored {entry_id} {s.kind} sid={s.sid} seq={s.sequence} "
                  f"type={s.event_type} notice={s.notice_id}")

    def granted(self, sid: str, member: str, key: str, handler: str, task: str, late: bool,
                executor: str) -> Run:
        ident = (sid, member if sid else key.partition(":")[2], handler)
        run = Run(ident, task, late, self.now, self.step, executor)
        self.note(f"{executor} START {ident} task={task} late={late}")
        tasks = {r.task for r in self.grants[ident] if not r.forgotten} | {task}
        if len(tasks) > 1:
            self.violate("fence", f"{ident} started by tasks {sorted(tasks)}")
        if self.outcomes.get(ident):
            self.violate("once", f"{ident} started by task {task} after its outcome was "
                         f"recorded (finish applied at step {self.outcomes[ident][0][0]})")
        if sid:
            seq = run.seq
            for other in self.runs_by_sid[sid]:
                if other.forgotten or other.key[1] == member:
                    continue
                if (other.active and (other.key, other.task) not in self.task_done
                        and self.now - other.granted_at < self.deadline_ms):
                    self.violate("overlap", f"{ident} task {task} started while "
                                 f"{other.key} task {other.task} (started at "
                                 f"{other.granted_at}, by {other.executor}) runs")
                if other.seq > seq and not late:
                    self.violate("order", f"{ident} task {task} (not late) started after "
                                 f"{other.key} task {other.task}")
            self.runs_by_sid[sid].append(run)
        self.grants[ident].append(run)
        return run

    def ended(self, run: Run, completed: bool, failed: bool = False) -> None:
        run.active = False
        run.completed = completed
        run.failed = failed
        self.note(f"{run.executor} {'DONE' if completed else 'ended'} {run.key} task={run.task}")
        if completed:
            self.task_done.add((run.key, run.task))

    def observe(self, name: str, args: list[Any], reply: Any) -> None:
        """A script Redis applied, with its true reply."""
        nkeys = int(args[2])
        kv, argv = args[3:3 + nkeys], args[3 + nkeys:]
        # The sid and the script's own arguments (after the common ten, _lib.lua).
        shown = [text(a)[:40] for a in argv[6:7] + argv[10:] if not text(a).startswith("{")]
        if name == "settle_entry":
            shown = [text(kv[0])] + [text(a)[:40] for a in argv[:3]]
        if name == "save_record":
            self._saved(argv, reply)
            return
        self.note(f"applied {name} {' '.join(shown)} -> {_short(reply)}")
        if name == "admit":
            self.seen_sids.setdefault(text(argv[6]), None)
            self.settled_entries.setdefault(text(argv[13]), self.step)
        if name == "settle_entry":
            self.settled_entries.setdefault(text(argv[1]), self.step)
        turn = (reply[1:] if name == "admit" else reply if name == "take"
                else reply[1:] if name == "finish" and text(reply[0]) == "next" else [])
        if turn and text(turn[0]) == "event":
            if text(turn[4]) == "1":
                self.taken_late.add((text(argv[6]), text(turn[2])))
            for handler in turn[9:]:
                self.publishes[(text(argv[6]), text(turn[2]), text(handler))] += 1
        if name == "finish":
            status = text(reply[0])
            if status != "stale":
                ident = (text(argv[6]), text(argv[10]), text(argv[11]))
                self.outcomes[ident].append((self.step, text(argv[12])))

    def _saved(self, argv: list[Any], reply: Any) -> None:
        """A record written (``save_record.lua``); a fold's (its turn is named) adds
        the event's key last to ``recent_keys``."""
        if text(reply) != "ok" or not text(argv[5]):
            return
        record = json.loads(text(argv[1]))
        key = record["recent_keys"][-1]
        self.note(f"FOLDED {key} (turn {text(argv[5])})")
        self.fold_steps[(text(argv[4]), key)].append(self.step)

    def rollback(self, snap_step: int) -> None:
        """Redis restarted from its state at ``snap_step`` (see the module doc)."""
        self.note(f"ROLLBACK to the snapshot of step {snap_step}")
        self.rollbacks += 1
        for b in self.bodies:
            if b.step > snap_step:
                b.lost = True
        for runs in self.grants.values():
            for r in runs:
                if r.step > snap_step:
                    r.forgotten = True
        self.settled_entries = {e: s for e, s in self.settled_entries.items()
                                if s <= snap_step}
        for ident, done in self.outcomes.items():
            kept = [(s, t) for s, t in done if s <= snap_step]
            self.forgotten_outcomes[ident] += len(done) - len(kept)
            self.outcomes[ident] = kept
        for fold, steps in self.fold_steps.items():
            if any(s > snap_step for s in steps):
                self.forgotten_folds.add(fold)
            self.fold_steps[fold] = [s for s in steps if s <= snap_step]

    # -- checks -------------------------------------------------------------------
    def check_step(self, admin: redis.Redis, sids: list[str]) -> None:
        """The step invariants, read in one round trip (``STATE_LUA``: a read-only
        script, so what it sees is one moment of Redis)."""
        pairs = [x for sid in sids for x in (sid, keys.recording_prefix(sid))]
        reply = admin.eval(STATE_LUA, 0, keys.TIMERS, keys.INBOX, keys.INBOX_GROUP,
                           len(GLOBAL_KEYS_ARGS), *GLOBAL_KEYS_ARGS, *pairs)
        for name in reply[0]:
            self.violate("ttl", f"{text(name)} has no expiry")
        for row in reply[1]:
            entry = text(row[0])
            if entry in self.settled_entries:
                self.violate("ack", f"inbox entry {entry} is still pending (held by "
                             f"{text(row[1])}), although a script settled it at step "
                             f"{self.settled_entries[entry]}")
        for sid, (order, slots, head, oldest, timer) in zip(sids, reply[2:], strict=True):
            due = self._due(sid, _pairs(order), _pairs(slots), head, oldest)
            timer = int(float(timer)) if timer else None
            if due is None:
                if timer is not None:
                    self.violate("timer", f"{sid} is idle but has a timer at {timer}")
                continue
            if timer is None:
                self.violate("timer", f"{sid} is due at {due} and has no timer")
            elif timer > due:
                self.violate("timer", f"{sid} is due at {due}, its timer is late: {timer}")
            elif timer != due:
                self.violate("timer", f"{sid} is due at {due}, its timer says {timer} "
                             f"(PROTOCOL.md: the due time itself)")

    def _due(self, sid: str, order: dict[bytes, bytes], slots: dict[bytes, bytes],
             head: list[Any], oldest: list[Any]) -> int | None:
        if b"cur" in order:
            if not slots:
                self.violate("state", f"{sid} has a turn ({text(order[b'cur'])}) without "
                             f"handler slots")
                return self.now
            due = None
            unstarted = False
            for value in slots.values():
                owner, _, deadline = text(value).partition("|")
                unstarted = unstarted or owner == "-"
                due = int(deadline) if due is None else min(due, int(deadline))
            if unstarted:
                due = min(due or 0, int(order.get(b"pl", b"0")))
            return due
        if head:
            seq = int(float(head[1]))
            nxt = int(order[b"next"]) if b"next" in order else None
            if (nxt is not None and seq <= nxt) or (nxt is None and seq == 0):
                self.violate("state", f"{sid}: {text(head[0])} is next in order and was "
                             f"not taken")
                return self.now
            return int(float(oldest[1])) + self.hold_ms if oldest else self.now
        return None

    def _check_timeline(self, admin: redis.Redis, events: dict[tuple[str, str, int], Any],
                        ran: dict[tuple[str, int, str], int]) -> None:
        """``timeline``: the dashboard's timeline of each recording has one run per
        handler outcome Redis holds (a ``finish`` applied, or a ``lost`` dead letter)
        and one member per event whose fold Redis holds: each is written in the same
        script as the fact it shows, so a fault or a rollback drops or keeps both."""
        sids = sorted({sid for sid, _, _ in events if not keys.is_unordered_sid(sid)})
        runs: dict[tuple[str, int, str], int] = defaultdict(int)
        shown: dict[tuple[str, str], int] = defaultdict(int)
        for sid in sids:
            for raw in admin.zrange(keys.recording_timeline(sid), 0, -1):
                item = json.loads(raw)
                if item["k"] == "h":
                    runs[(sid, int(item["seq"]), str(item["handler"]))] += 1
                else:
                    shown[(sid, str(item["key"]))] += 1
        for ident in sorted(set(runs) | {i for i, n in ran.items() if n}):
            if keys.is_unordered_sid(ident[0]):
                continue
            if runs.get(ident, 0) != ran.get(ident, 0):
                self.violate("timeline", f"{ident}: {runs.get(ident, 0)} runs on the "
                             f"timeline, {ran.get(ident, 0)} outcomes recorded")
        if not self.folds:
            return
        for sid, fld, _seq in events:
            if keys.is_unordered_sid(sid):
                continue
            key = f"{sid}:{fld}"
            want = 1 if self.fold_steps.get((sid, key)) else 0
            if shown.get((sid, key), 0) != want:
                self.violate("timeline", f"{sid} {fld}: {shown.get((sid, key), 0)} event "
                             f"members on the timeline, {want} expected (its fold)")

    def _check_folds(self, admin: redis.Redis, events: dict[tuple[str, str, int], Any],
                     finished: set[tuple[str, str]]) -> None:
        """``fold``: every event is folded into its recording's record at most once,
        and at least once if a handler of it finished (a fold precedes the publish of
        its handlers and the end of its ``FOLD_SLOT``); only an event whose handlers
        all ended ``lost`` may be missing. ``fold order``: folds follow the turns (an
        event the record calls late was dispatched late)."""
        by_sid: dict[str, list[tuple[str, int, bool]]] = defaultdict(list)
        for (sid, fld, seq) in events:
            if keys.is_unordered_sid(sid):
                continue
            must = (sid, fld) in finished
            if must and (sid, f"{sid}:{fld}") in self.forgotten_folds:
                # Its fold was written after the snapshot a rollback restored, and its
                # handlers (published before) ran after it: Redis lost the fold.
                self.known_gap("fold_lost_by_rollback", f"{sid} {fld}: its fold was "
                               f"lost with the writes a Redis rollback dropped")
                must = False
            by_sid[sid].append((fld, seq, must))
        for sid, evs in by_sid.items():
            raw = admin.get(keys.recording_state(sid))
            record = json.loads(raw) if raw else {"event_count": 0, "event_types": {},
                                                 "sequences": {"late": []}}
            low_t: dict[str, int] = defaultdict(int)
            high_t: dict[str, int] = defaultdict(int)
            for fld, _seq, done in evs:
                kind = fld.partition(":")[0]
                high_t[kind] += 1
                low_t[kind] += 1 if done else 0
            seen = record["sequences"].get("seen", [])
            for kind in sorted(set(high_t) | set(record["event_types"])):
                got = int(record["event_types"].get(kind, 0))
                if not low_t[kind] <= got <= high_t[kind]:
                    unseen = sorted(seq for fld, seq, _done in evs
                                    if fld.partition(":")[0] == kind
                                    and not any(lo <= seq <= hi for lo, hi in seen))
                    self.violate("fold", f"{sid}: {got} events of type {kind} folded, "
                                 f"{low_t[kind]} to {high_t[kind]} expected (each event "
                                 f"once; one with a finished handler at least once); "
                                 f"not seen: {unseen[:5]}")
            for late in record["sequences"]["late"]:
                member = member_of(int(late["sequence"]),
                                   f"{late['event_type']}:{late['sequence']}")
                if (sid, member) not in self.taken_late:
                    self.violate("fold order", f"{sid}: {member} folded late, but its turn "
                                 f"was not late: folded out of the recording's order")

    def check_settled(self, admin: redis.Redis, sids: list[str], broker_idle: bool,
                      counters_exact: bool) -> dict[str, int]:
        """The promises once nothing is left to do; returns outcome counts."""
        tally: dict[str, int] = defaultdict(int)
        if admin.xlen(keys.INBOX):
            self.violate("settled", f"{admin.xlen(keys.INBOX)} inbox entries left")
        pending = admin.xpending(keys.INBOX, keys.INBOX_GROUP)
        if pending and pending.get("pending"):
            self.violate("settled", f"{pending['pending']} inbox entries pending")
        if admin.zcard(keys.TIMERS):
            left = admin.zrange(keys.TIMERS, 0, -1, withscores=True)
            self.violate("settled", f"timers left: {left}")
        for sid in sids:
            if (admin.zcard(keys.recording_buffer(sid)) or admin.hlen(keys.recording_turn(sid))
                    or admin.hexists(keys.recording_order(sid), "cur")):
                self.violate("settled", f"{sid} still holds work: "
                             f"buffer={admin.zrange(keys.recording_buffer(sid), 0, -1)} "
                             f"order={admin.hgetall(keys.recording_order(sid))} "
                             f"slots={admin.hgetall(keys.recording_turn(sid))}")
        if not broker_idle:
            self.violate("settled", "messages left in the broker")

        body_letters: dict[str, list[str]] = defaultdict(list)
        lost: dict[tuple[str, str, str], int] = defaultdict(int)
        for _id, fields in admin.xrange(keys.DEADLETTERS) or []:
            f = {text(k): text(v) for k, v in (fields or {}).items()}
            extra = json.loads(f.get("extra") or "{}")
            if f.get("kind") == "body":
                body_letters[str(extra.get("entry"))].append(f.get("reason", ""))
            elif f.get("reason") == "lost":
                lost[(str(extra.get("sid")), str(extra.get("member")), f["handler"])] += 1

        alive = [b for b in self.bodies if not b.lost]
        finished: set[tuple[str, str]] = set()  # events with a handler finished
        # (sid, dedupe field, sequence) -> the bodies of one event
        events: dict[tuple[str, str, int], list[Body]] = defaultdict(list)
        for b in alive:
            s = b.sent
            if s.kind in ("invalid", "stale"):
                reasons = body_letters.pop(b.entry_id, [])
                if len(reasons) != 1 or (s.kind == "stale" and reasons != ["stale"]):
                    self.violate("outcome", f"{s.kind} body {b.entry_id} has dead letters "
                                 f"{reasons} (one expected)")
                tally[s.kind] += 1
            elif s.kind == "ordered":
                events[(s.sid, f"{s.event_type}:{s.sequence}", s.sequence)].append(b)
            else:
                # The workers handle it as the only event of a recording of its own.
                usid = keys.unordered_sid(s.notice_id)
                events[(usid, f"n:{s.notice_id}", 0)].append(b)
        for entry, reasons in body_letters.items():
            self.violate("outcome", f"body dead letters {reasons} for entry {entry}, which "
                         f"is not an invalid or stale body")

        ran: dict[tuple[str, int, str], int] = defaultdict(int)
        for (sid, fld, seq), bodies in events.items():
            event_type = json.loads(bodies[0].sent.body)["eventType"]
            owner = admin.hget(keys.recording_dedupe(sid), fld)
            entries = {b.entry_id for b in bodies}
            if owner is None or text(owner) not in entries:
                self.violate("outcome", f"event {sid} {fld}: claimed by {owner!r}, not by "
                             f"one of its entries {sorted(entries)}")
            tally["duplicate"] += len(bodies) - 1
            tally["event"] += 1
            member = member_of(seq, fld)
            for handler in self.handlers_for(event_type, MSG_NAMES.get(event_type)):
                ident = (sid, member, handler)
                n_done, n_lost = len(self.outcomes.get(ident, [])), lost.pop(ident, 0)
                # The fold's own slot is no handler run: on the timeline only if lost.
                ran[(sid, seq, handler)] += n_lost + (0 if handler == FOLD_SLOT else n_done)
                if n_done:
                    finished.add((sid, fld))
                if n_done + n_lost != 1:
                    self.violate("outcome", f"handler {ident}: finished {n_done} times, "
                                 f"dead-lettered lost {n_lost} times (once in all expected)")
                if (n_lost and not self.lost_ok and ident not in self.gave_up
                        and self.publishes.get(ident, 0) < 2):
                    self.violate("liveness", f"handler {ident} dead-lettered as lost, with no "
                                 f"fault that could delay it past HANDLER_DEADLINE_S (no "
                                 f"task gave up on it, and it was never published again)")
                tally["handler_lost" if n_lost else "handler_done"] += 1
        for ident, n in lost.items():
            self.violate("outcome", f"lost dead letters for {ident} ({n}), not an event stored")
        if self.folds:
            self._check_folds(admin, events, finished)
        self._check_timeline(admin, events, ran)

        if counters_exact:
            c = {text(k): int(v) for k, v in admin.hgetall(keys.COUNTERS).items()}
            settled = sum(c.get(n, 0) for n in ("admitted", "duplicates", "invalid", "stale"))
            if settled != len(alive):
                self.violate("counters", f"admitted+duplicates+invalid+stale = {settled}, "
                             f"{len(alive)} bodies stored ({c})")
        return dict(tally)
