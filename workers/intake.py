"""Intake: from the inbox stream to admitted events, in batches.

Runs in a process next to every worker (``workers.bootstep``). Each
round reads up to ``INTAKE_BATCH`` stored bodies through the consumer group,
parses them, and settles every one in one pipeline: dead letter (invalid, stale),
``admit`` (ordered events: dedupe, buffer, take) or ``claim_notice`` (unordered
events). The handler tasks of events whose turn came are then published, and a
second pipeline (one ``MULTI``/``EXEC``) commits those turns, sets timers, counts,
and acknowledges and deletes the entries (``XACK`` + ``XDEL``). An entry whose
outcome did not reach Redis is not acknowledged: it stays pending, and
``XAUTOCLAIM`` hands it to a worker again after ``CLAIM_IDLE_MS``, as it does for
the entries of a worker that died.

Taking an entry twice is harmless. ``admit`` and ``claim_notice`` recognise their
own entry id. An ordered event's publishes are sent by its turn's ``commit``, only
if the turn is still this take's. An unordered event has no turn: its publishes,
its counts and the acknowledgement of its entry are one ``settle_entry`` script,
which does all of it only if this consumer still owns the entry. A consumer
delayed past ``CLAIM_IDLE_MS`` whose entry another worker took over therefore
publishes nothing and leaves the entry to its new owner.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from agora_callbacks import deadletters, keys
from agora_callbacks.inbox import InboxEntry
from agora_callbacks.logs import get_logger
from workers import scripts, timers
from workers.dedupe import dedupe_field, dedupe_key, is_ordered
from workers.dispatch import Dispatcher, publish, q_counters, q_timer_commit, task_args
from workers.ordering import Push, Record, claim_notice, parse_admit, settle_entry
from workers.outbox import Outbox, publishing
from workers.registry import REGISTRY
from workers.runtime import Runtime
from workers.scripts import Call

log = get_logger("workers.intake")

SWEEP_INTERVAL_S = 0.1
CLAIM_INTERVAL_S = 1.0


def consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class _Item:
    """One entry of a batch and what was decided for it."""

    entry: InboxEntry
    event: Any = None
    sid: str = ""
    handlers: tuple[str, ...] = ()
    key: str = ""
    outcome: str = ""  # invalid, stale, ordered, unordered
    calls: list[Call] = field(default_factory=list)


class SettleEntry:
    """The call that settles an unordered event's entry (``settle_entry.lua``): its
    publishes (``pushes``), what was counted for it, the acknowledgement, only if
    ``consumer`` still owns the entry."""

    __slots__ = ("consumer", "counted", "entry_id", "key", "pushes")

    def __init__(self, consumer: str, entry_id: str, key: str, pushes: tuple[Push, ...],
                 counted: Counter[str]) -> None:
        self.consumer, self.entry_id, self.key = consumer, entry_id, key
        self.pushes, self.counted = pushes, counted

    def __call__(self, pipe: Any) -> object:
        return settle_entry(pipe, self.consumer, self.entry_id, self.pushes, self.counted)


class Intake:
    """Reads the inbox for one worker process."""

    def __init__(self, rt: Runtime, consumer: str | None = None,
                 client: redis.Redis | None = None) -> None:
        self.rt = rt
        self.settings = rt.settings
        self.consumer = consumer or consumer_name()
        block_s = 1.0
        self.block_ms = int(block_s * 1000)
        # Reads block up to block_ms: the socket timeout must outlast them.
        self.client = client or redis.Redis.from_url(
            self.settings.redis_url, socket_timeout=self.settings.redis_timeout_s + block_s,
            socket_connect_timeout=self.settings.redis_timeout_s, health_check_interval=30)
        self.dispatcher = Dispatcher(rt)
        self._claim_cursor = "0-0"

    # -- reading ------------------------------------------------------------------
    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read(self, block_ms: int | None = None) -> list[InboxEntry]:
        reply: Any = self.client.xreadgroup(
            keys.INBOX_GROUP, self.consumer, {keys.INBOX: ">"},
            count=self.settings.intake_batch,
            block=self.block_ms if block_ms is None else block_ms)
        if not reply:
            return []
        return [InboxEntry.from_stream(i, f) for _, rows in reply for i, f in rows if f]

    def autoclaim(self) -> list[InboxEntry]:
        """Take over entries another consumer read and left unacknowledged."""
        reply: Any = self.client.xautoclaim(
            keys.INBOX, keys.INBOX_GROUP, self.consumer, self.settings.claim_idle_ms,
            start_id=self._claim_cursor, count=self.settings.intake_batch)
        cursor, rows = reply[0], reply[1]
        self._claim_cursor = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        entries = [InboxEntry.from_stream(i, f) for i, f in rows if f]
        if entries:
            log.warning("took over unacknowledged bodies", count=len(entries))
        return entries

    # -- deciding -----------------------------------------------------------------
    def _classify(self, entry: InboxEntry, counts: Counter[str]) -> _Item:
        from schemas import InvalidEvent, parse_event

        item = _Item(entry)
        settings = self.settings
        meta = entry.meta.as_dict()
        try:
            event = parse_event(entry.body)
        except InvalidEvent as exc:
            item.outcome = "invalid"
            counts["invalid"] += 1
            detail = json.dumps(getattr(exc, "messages", {}), default=str)[:8000]
            reason = str(getattr(exc, "reason", "invalid"))
            item.calls.append(lambda p: deadletters.add(
                p, settings.deadletter_maxlen, kind=deadletters.BODY, reason=reason,
                detail=detail, body=entry.body, meta=meta, extra={"entry": entry.entry_id}))
            log.warning("invalid body dead-lettered", entry=entry.entry_id, reason=reason,
                        request_id=entry.meta.request_id)
            return item
        item.event = event
        item.key = dedupe_key(event, settings.dedupe_key)
        with structlog.contextvars.bound_contextvars(
                sid=event.sid, sequence=event.sequence, notice_id=event.notice_id):
            cutoff = int(time.time() * 1000) - settings.dedupe_ttl_s * 1000
            if (entry.meta.origin is None and event.notify_ms is not None
                    and event.notify_ms < cutoff):
                item.outcome = "stale"
                counts["stale"] += 1
                item.calls.append(lambda p: deadletters.add(
                    p, settings.deadletter_maxlen, kind=deadletters.BODY, reason="stale",
                    detail=f"notifyMs {event.notify_ms} is older than the dedupe window "
                           f"({settings.dedupe_ttl_s} s): a replayed capture",
                    body=entry.body, meta=meta, key=item.key,
                    extra={"entry": entry.entry_id}))
                log.warning("stale body dead-lettered", notify_ms=event.notify_ms)
                return item
            item.handlers = REGISTRY.names_for(event.event_type, event.msg_name)
            record = Record(handlers=item.handlers, key=item.key, meta=meta,
                            entry_id=entry.entry_id, body=entry.body,
                            notice_id=event.notice_id)
            if is_ordered(event):
                item.outcome = "ordered"
                item.sid = str(event.sid)
                fld = dedupe_field(event, settings.dedupe_key)
                seq = int(event.sequence or 0)
                item.calls.append(lambda p: self.rt.ordering.q_admit(
                    p, item.sid, fld, seq, entry.entry_id, record))
            else:
                item.outcome = "unordered"
                item.calls.append(lambda p: claim_notice(
                    p, event.notice_id, entry.entry_id, settings.dedupe_ttl_s))
        return item

    def process(self, entries: list[InboxEntry]) -> int:
        """Settle a batch; return how many entries were acknowledged."""
        if not entries:
            return 0
        counts: Counter[str] = Counter()
        items = [self._classify(e, counts) for e in entries]
        calls = [c for it in items for c in it.calls]
        results = scripts.run(self.client, calls)
        done: list[str] = []
        after: list[Call] = []
        with publishing() as (producer, outbox):
            for item, result in zip(items, results, strict=True):
                if isinstance(result, Exception):
                    log.error("could not settle a body, left for a retry",
                              entry=item.entry.entry_id, error=str(result))
                    continue
                if item.outcome == "ordered":
                    after.extend(self._admitted(item, result, counts, producer, outbox))
                elif item.outcome == "unordered":
                    # Acknowledged by its own script, only if still this consumer's.
                    after.append(self._claimed(item, result, producer, outbox))
                    continue
                done.append(item.entry.entry_id)
        # The timers of committed turns last: a "busy" reply later in the batch
        # (another event of a recording whose turn this batch took) would move
        # its timer back to the lease the commit made moot.
        after.sort(key=lambda call: getattr(call, "func", None) is q_timer_commit)
        after.append(lambda p: q_counters(p, counts))
        if done:
            after.append(lambda p: p.xack(keys.INBOX, keys.INBOX_GROUP, *done))
            after.append(lambda p: p.xdel(keys.INBOX, *done))
        # Publishes, commits, timers, counts and acknowledgements: all or nothing.
        # Every publish is sent by a script, conditionally: an ordered event's by
        # its turn's commit (only if the turn is still this take's), an unordered
        # event's by the settling of its entry (only if the entry is still this
        # consumer's). The outbox is left empty (kept for safety).
        sent = [*outbox.calls(), *after]
        replies = scripts.run(self.client, sent, atomic=True)
        self.dispatcher.after_commits(sent, replies)
        return len(done) + self._after_settles(sent, replies)

    def _after_settles(self, calls: list[Call], replies: list[Any]) -> int:
        """Log the unordered entries not settled here; return how many were."""
        settled = 0
        for call, reply in zip(calls, replies, strict=True):
            if not isinstance(call, SettleEntry):
                continue
            if isinstance(reply, Exception):
                log.error("could not settle a body, left for a retry", entry=call.entry_id,
                          error=str(reply))
            elif int(reply or 0) > 0:
                settled += 1
            else:
                log.warning("publish dropped: the entry was taken over by another worker",
                            entry=call.entry_id, key=call.key)
        return settled

    def _admitted(self, item: _Item, reply: Any, counts: Counter[str],
                  producer: Any, outbox: Outbox) -> list[Call]:
        event = item.event
        admitted = parse_admit(reply)
        with structlog.contextvars.bound_contextvars(
                sid=item.sid, sequence=event.sequence, notice_id=event.notice_id):
            if admitted.status == "dup":
                counts["duplicates"] += 1
                log.info("duplicate dropped", key=item.key)
                return []
            if admitted.status == "admitted":
                counts["admitted"] += 1
                log.info("admitted", key=item.key, handlers=item.handlers)
            else:
                log.info("admitted again after a redelivery", key=item.key)
        return self.dispatcher.settle(item.sid, admitted.turn, counts, producer, outbox)

    def _claimed(self, item: _Item, reply: Any, producer: Any, outbox: Outbox) -> SettleEntry:
        """Publish an unordered event (unless a copy); return the call that sends
        its publishes, counts it and acknowledges its entry, if still ours."""
        status = reply.decode() if isinstance(reply, bytes) else str(reply)
        event = item.event
        entry_id = item.entry.entry_id
        counted: Counter[str] = Counter()
        mark = outbox.mark()
        with structlog.contextvars.bound_contextvars(notice_id=event.notice_id,
                                                     sid=event.sid):
            if status == "dup":
                counted["duplicates"] += 1
                log.info("duplicate dropped", key=item.key)
            else:
                counted["admitted"] += 1
                record = Record(handlers=item.handlers, key=item.key,
                                meta=item.entry.meta.as_dict(), entry_id=entry_id,
                                body=item.entry.body)
                if item.handlers:
                    publish(item.handlers, task_args("", "", record, False, None), producer)
                    counted["dispatched"] += 1
                log.info("dispatched unordered", key=item.key, handlers=item.handlers)
        return SettleEntry(self.consumer, entry_id, item.key,
                           tuple(outbox.pushes_since(mark)), counted)

    # -- the loop -----------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Read, settle, sweep and take over, until ``stop`` is set."""
        self.ensure_group()
        next_sweep = next_claim = 0.0
        log.info("intake started", consumer=self.consumer)
        while not stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + CLAIM_INTERVAL_S
                    self.process(self.autoclaim())
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL_S
                    while timers.sweep(self.dispatcher) >= 100 and not stop.is_set():
                        pass
                block = max(1, int((next_sweep - time.monotonic()) * 1000))
                self.process(self.read(block_ms=min(block, self.block_ms)))
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self.ensure_group()
                    continue
                log.exception("intake round failed")
                stop.wait(0.5)
            except Exception:
                log.exception("intake round failed")
                stop.wait(0.5)
        log.info("intake stopped", consumer=self.consumer)
