"""A recording's record and lifecycle, kept in the path that holds its turn.

Every event is folded into its recording's record by the process that took the
event's turn, before it publishes the event's handler tasks (``fold_turn``, called
by ``workers.dispatch.Dispatcher.dispatch``), so the fold costs no Celery task of
its own: a few Redis round trips in a process that already runs. An event that no
user handler is registered for gets one slot, ``dispatch.FOLD_SLOT``, which this process
ends itself once the event is folded (``finish``), so its turn waits for no task.

Why this keeps the ordering guarantees:

- the next event of a recording is taken only when the turn ends, and a turn ends
  only after its fold (its handler tasks are published after the fold, and its
  ``FOLD_SLOT`` is finished after it): folds run in the recording's order;
- a turn published again (its publisher died or stalled past ``DISPATCH_LEASE_MS``)
  is folded again, which changes nothing (the record keeps the keys of the last
  events applied, ``fold.apply``); two processes folding one turn at once, or a
  stalled one waking up after the turn was over, cannot overwrite each other: the
  record is written with a compare-and-set (``store.save_if``), and only while the
  event's turn is current;
- handlers of an event see the record with that event folded in.

The fold's compare-and-set also writes the event's member of the dashboard's
timeline (``agora_callbacks.recording_timeline``) in the same step, so every
folded event is on its recording's timeline, with or without a user handler.

The same compare-and-set serves ``update_record`` (reconciliation with Agora's
``query``) and the lifecycle sweep, which fires phases that are due by time alone
(``stalled``, settle windows: ``workers.builtin.phases``) from the
``keys.LIFECYCLE_TIMERS`` sorted set, written with the record.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from agora_callbacks import keys, metrics, recording_timeline
from agora_callbacks.logs import get_logger
from agora_callbacks.settings import Settings
from agora_callbacks.workers.builtin import phases, store
from agora_callbacks.workers.builtin.fold import apply
from agora_callbacks.workers.builtin.record import as_int, as_str, field, merge_file, new_record

log = get_logger("workers.lifecycle")

#: Compare-and-set attempts before giving up (each conflict is another writer's
#: success, so this is only reached under a storm of writers to one record).
MAX_TRIES = 50


@dataclass(frozen=True)
class Config:
    ttl_s: int
    settle_ms: int
    stall_ms: int
    lease_ms: int

    @classmethod
    def of(cls, settings: Settings) -> Config:
        return cls(ttl_s=settings.record_ttl_s, settle_ms=settings.settle_s * 1000,
                   stall_ms=settings.stall_after_s * 1000,
                   lease_ms=settings.dispatch_lease_ms)


@dataclass
class Outcome:
    """What one compare-and-set change did."""

    status: str  # "saved", "unchanged", "absent", "stale"
    record: dict[str, Any] | None
    fired: list[str]
    reconcile: list[str]
    now_ms: int = 0


#: A change: (stored record or None, now ms) -> the new record, or None for no change.
Change = Callable[[dict[str, Any] | None, int], dict[str, Any] | None]


def _hooks_known() -> bool:
    from agora_callbacks.workers import hooks

    return hooks.STATE.loaded


def _drop_hookless(record: dict[str, Any]) -> None:
    """In a process that knows every hook: phases with none need no publish."""
    from agora_callbacks.workers import hooks

    lc = phases.lifecycle_of(record)
    if lc["pending"] and _hooks_known():
        lc["pending"] = [p for p in lc["pending"] if hooks.names_for(p)]


def _due(record: dict[str, Any], now_ms: int, cfg: Config) -> int:
    if phases.lifecycle_of(record)["pending"]:
        return now_ms + cfg.lease_ms  # hooks to publish: looked at again after a lease
    return phases.next_due_ms(record, now_ms, settle_ms=cfg.settle_ms, stall_ms=cfg.stall_ms)


def transact(client: redis.Redis, sid: str, change: Change, *, cfg: Config,
             now_ms: int | None = None, turn: str = "",
             known: store.Loaded | None = None,
             timeline: recording_timeline.Member | None = None) -> Outcome:
    """Apply ``change`` to a copy of the stored record, fire the phases then due,
    and write it back with a compare-and-set, trying again on a conflict.
    ``now_ms``: the time of the decision (default: Redis's clock, read with the
    record). ``turn``: write only while that member's turn is current (the
    turn-path fold). ``known``: the record as already read (the first attempt uses
    it and saves a round trip; a conflict reads it again). ``timeline``: the
    event's timeline member, written with the record."""
    for _ in range(MAX_TRIES):
        loaded = known or store.read(client, sid, with_turn=bool(turn),
                                     with_time=now_ms is None)
        known = None
        now = now_ms if now_ms is not None else int(loaded.now_ms or 0)
        if turn and loaded.turn != turn:
            return Outcome("stale", loaded.record, [], [], now)
        # The loaded record is this call's own (decoded from the bytes just read),
        # and is read again on a conflict: ``change`` may modify it in place.
        changed = change(loaded.record, now)
        if changed is None:
            return Outcome("unchanged" if loaded.record is not None else "absent",
                           loaded.record, [], [], now)
        fired = phases.evaluate(changed, now, settle_ms=cfg.settle_ms, stall_ms=cfg.stall_ms)
        reasons = phases.reconcile_reasons(changed, now)
        _drop_hookless(changed)
        status = store.save_if(client, sid, changed, cfg.ttl_s, loaded.tag,
                               due_ms=_due(changed, now, cfg), turn=turn,
                               timeline=timeline)
        if status == "ok":
            return Outcome("saved", changed, fired, reasons, now)
        if status == "stale":
            return Outcome("stale", loaded.record, [], [], now)
    raise redis.WatchError(f"record of {sid} changed {MAX_TRIES} times while being updated")


# -- after a change: hooks and reconciliation ----------------------------------------
def _request_reconcile(sid: str, reasons: list[str]) -> None:
    if not reasons:
        return
    try:
        reconcile = importlib.import_module("agora_callbacks.reconcile")
    except ImportError:
        return
    for reason in reasons:
        try:
            asked = reconcile.request(sid, reason)
            log.info("reconciliation requested", sid=sid, reason=reason, accepted=asked)
        except Exception as exc:  # the record is saved; reconciliation is best effort
            log.warning("reconciliation request failed", sid=sid, reason=reason,
                        error=str(exc))


def _publish_pending(client: redis.Redis, sid: str, record: dict[str, Any], cfg: Config,
                     now_ms: int) -> None:
    """Publish the hook tasks of the phases fired and not published yet, then record
    that they were (the record's timer republishes them if this process dies)."""
    from agora_callbacks.workers import hooks

    pending = list(phases.lifecycle_of(record)["pending"])
    if not pending or not _hooks_known():
        return
    fired = record["lifecycle"]["fired"]
    for phase in pending:
        try:
            n = hooks.publish(record["sid"], phase, fired.get(phase) or {}, record)
        except Exception as exc:  # the broker: the record's timer publishes them again
            log.warning("lifecycle hooks not published; published again after a lease",
                        sid=sid, phase=phase, error=str(exc))
            return
        log.info("lifecycle phase fired", sid=sid, phase=phase, hooks=n,
                 source=(fired.get(phase) or {}).get("source"))

    def published(current: dict[str, Any] | None, now: int) -> dict[str, Any] | None:
        if current is None:
            return None
        lc = phases.lifecycle_of(current)
        left = [p for p in lc["pending"] if p not in pending]
        if left == lc["pending"]:
            return None
        lc["pending"] = left
        return current

    transact(client, sid, published, cfg=cfg, now_ms=now_ms)


def after(client: redis.Redis, sid: str, outcome: Outcome, cfg: Config) -> None:
    """What follows a saved change: log the phases, publish hooks, ask reconciliation."""
    if outcome.status != "saved" or outcome.record is None:
        return
    now_ms = outcome.now_ms
    for phase in outcome.fired:
        metrics.LIFECYCLE_PHASES.labels(phase).inc()
        info = outcome.record["lifecycle"]["fired"][phase]
        log.info("lifecycle phase decided", sid=sid, phase=phase, source=info.get("source"),
                 sequence=info.get("sequence"),
                 reason=(info.get("reason") or {}).get("code"))
    _publish_pending(client, sid, outcome.record, cfg, now_ms)
    _request_reconcile(sid, outcome.reconcile)


# -- the turn path --------------------------------------------------------------------
def fold_change(event: Any, *, key: str, late: bool, gap: Any) -> Change:
    """The change that folds ``event`` (None when it was applied already)."""
    def change(current: dict[str, Any] | None, now_ms: int) -> dict[str, Any] | None:
        record = current if current is not None else new_record(
            as_str(field(event, "sid")) or "")
        if not apply(record, event, late=late, gap=gap, key=key):
            return None
        details = field(event, "details")
        phases.note_event(record, as_int(field(event, "event_type")),
                          as_int(field(event, "sequence")),
                          lambda name: field(details, name), now_ms)
        return record
    return change


def fold_event(client: redis.Redis, settings: Settings, sid: str, event: Any, *, key: str,
               late: bool, gap: Any, now_ms: int | None = None, turn: str = "",
               state: bytes | None = None, meta: Mapping[str, Any] | None = None
               ) -> Outcome:
    """Fold one event into the record of ``sid`` (re-run safe), fire what is due.
    ``state``: the stored record's bytes as the script that took the turn read them
    (then the fold costs one round trip, the write, unless the record changed).
    ``turn`` (the turn-path fold): the event's member of the dashboard's timeline is
    written with the record, its received time from ``meta`` (the inbox entry's
    receive metadata)."""
    cfg = Config.of(settings)
    known = None if state is None else store.loaded(state, turn=turn, now_ms=now_ms)
    entry = None
    if turn and not keys.is_unordered_sid(sid):
        entry = recording_timeline.event_member(event, key=key, late=late, gap=gap,
                                                meta=meta or {})
    outcome = transact(client, sid, fold_change(event, key=key, late=late, gap=gap),
                       cfg=cfg, now_ms=now_ms, turn=turn, known=known, timeline=entry)
    if outcome.status == "saved":
        record = outcome.record or {}
        log.info("record updated", sid=sid, sequence=as_int(field(event, "sequence")),
                 phase=record.get("status", {}).get("phase"),
                 event_count=record.get("event_count"), late=late, gap=gap)
    elif outcome.status == "stale":
        log.info("fold skipped: the event's turn is over (folded by another process)",
                 sid=sid, sequence=as_int(field(event, "sequence")))
    else:
        log.info("record unchanged: event already folded", sid=sid,
                 sequence=as_int(field(event, "sequence")))
    after(client, sid, outcome, cfg)
    return outcome


# -- timers ----------------------------------------------------------------------------
def tick(client: redis.Redis, settings: Settings, sid: str, now_ms: int) -> Outcome:
    """Fire what time alone made due for ``sid`` (stall, settle windows), and publish
    hooks left unpublished. A recording without a record loses its timer."""
    cfg = Config.of(settings)

    def change(current: dict[str, Any] | None, now: int) -> dict[str, Any] | None:
        return current  # evaluate() in transact does the work

    outcome = transact(client, sid, change, cfg=cfg, now_ms=now_ms)
    if outcome.status == "absent":
        client.zrem(keys.LIFECYCLE_TIMERS, sid)
        return outcome
    after(client, sid, outcome, cfg)
    return outcome


def sweep(client: redis.Redis, settings: Settings, now_ms: int, limit: int = 100) -> int:
    """Tick up to ``limit`` recordings whose lifecycle timer is due; return how many."""
    due: Any = client.zrangebyscore(keys.LIFECYCLE_TIMERS, "-inf", now_ms, start=0, num=limit)
    for raw in due or []:
        sid = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            tick(client, settings, sid, now_ms)
        except redis.RedisError as exc:  # still due: the next sweep tries again
            log.error("lifecycle sweep could not look at a recording", sid=sid,
                      error=str(exc))
    return len(due or [])


# -- the interface for reconciliation (agora_callbacks.reconcile) ---------------------
def update_record(client: redis.Redis, sid: str, change: Callable[[dict[str, Any]], bool], *,
                  source: str, ttl_s: int | None = None, create: bool = False,
                  settings: Settings | None = None, now_ms: int | None = None
                  ) -> dict[str, Any] | None:
    """Apply ``change`` (mutates the record, True if it changed it) to the stored
    record of ``sid`` atomically with respect to the turn-path fold, fire the phases
    then due and publish their hooks. Returns the record as stored afterwards (None
    when there is none and ``create`` is false, or ``change`` refused a new one)."""
    from agora_callbacks.workers import runtime

    settings = settings or runtime.get().settings
    cfg = Config.of(settings)
    if ttl_s is not None:
        cfg = Config(ttl_s=ttl_s, settle_ms=cfg.settle_ms, stall_ms=cfg.stall_ms,
                     lease_ms=cfg.lease_ms)
    def wrapped(current: dict[str, Any] | None, now: int) -> dict[str, Any] | None:
        if current is None and not create:
            return None
        # A copy: the record returned when ``change`` refuses is the stored one.
        record = new_record(sid) if current is None else json.loads(json.dumps(current))
        return record if change(record) else None

    outcome = transact(client, sid, wrapped, cfg=cfg, now_ms=now_ms)
    log.info("record updated" if outcome.status == "saved" else "record not changed",
             sid=sid, source=source, fired=outcome.fired)
    after(client, sid, outcome, cfg)
    return outcome.record


def apply_query(record: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Fold what Agora's ``query`` said (``facts``, see /work/briefs/life-interface.md and
    README) into ``record``: kept under ``record["query"]``, its files merged into
    ``record["files"]`` (new ones marked ``"source": "query"``), and the marks the
    phase rules read. Always True."""
    from agora_callbacks.workers.builtin.record import Context

    at_ms = as_int(facts.get("at_ms")) or 0
    record["query"] = {**facts, "source": "query"}
    ctx = Context(event=None, details=None, event_type=None, sequence=None, at_ms=at_ms,
                  current=False)
    known = {f["file_name"] for f in record.get("files") or []}
    for item in facts.get("files") or []:
        name = as_str(item.get("file_name"))
        if not name:
            continue
        merge_file(record, ctx, name, track_type=as_str(item.get("track_type")),
                   uid=as_str(item.get("uid")), playable=item.get("is_playable"),
                   mixed_all_user=item.get("mixed_all_user"),
                   slice_start_ms=as_int(item.get("slice_start_time")))
        if name not in known:
            for entry in record["files"]:
                if entry["file_name"] == name:
                    entry["source"] = "query"
    phases.note_query(record, facts, at_ms)
    return True

