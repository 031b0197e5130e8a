"""Intake: from the inbox stream to admitted events, in batches.

Runs in a process next to every worker (``workers.bootstep``). Each round reads
up to ``INTAKE_BATCH`` stored bodies through the consumer group, parses them,
and settles every one in one pipeline, each body by one script that decides its
outcome and acknowledges its entry in the same atomic step:

- an event: ``admit`` (dedupe, buffer, acknowledge, take the next event). An
  event without ``sid``/``sequence`` (another NCS product, or a shape without
  them) is admitted as the only event of a recording of its own, keyed by its
  ``noticeId`` (``keys.unordered_sid``): deduped by ``noticeId``, dispatched at
  once, and fenced, finished and watched like any other;
- a body that is not a valid event, or a stale replay: ``settle_entry`` with its
  dead letter.

An entry whose script did not run (a Redis error) is not acknowledged: it stays
pending, and ``XAUTOCLAIM`` hands it to a worker again after ``CLAIM_IDLE_MS``,
as it does for the entries of a worker that died. Taking an entry twice is
harmless: ``admit`` and ``claim_notice`` recognise their own entry id, a dead
letter and the counts are written only by the call that acknowledges the entry,
and a handler task published twice starts once (``workers.dispatch``).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from agora_callbacks import deadletters, keys, metrics
from agora_callbacks.inbox import InboxEntry
from agora_callbacks.logs import get_logger
from agora_callbacks.workers import timers
from agora_callbacks.workers.consumers import remove_idle_consumers
from agora_callbacks.workers.dedupe import dedupe_field, dedupe_key, is_ordered
from agora_callbacks.workers.dispatch import FOLD_SLOT, Dispatcher
from agora_callbacks.workers.failure_streak import FailureStreak
from agora_callbacks.workers.ordering import Record, parse_admit, q_settle_entry, scripts
from agora_callbacks.workers.ordering.scripts import Call
from agora_callbacks.workers.registry import REGISTRY
from agora_callbacks.workers.runtime import Runtime

log = get_logger("workers.intake")

SWEEP_INTERVAL_S = 0.1
#: Takeover rounds are at most this far apart, and at most half CLAIM_IDLE_MS, so
#: that a dead consumer's entry is taken over within 1.5 x CLAIM_IDLE_MS (which is
#: below REORDER_HOLD_MS: before its successors give up waiting for it).
CLAIM_INTERVAL_S = 1.0
#: How often (and after how long idle) consumers holding nothing are removed.
CONSUMER_CLEANUP_INTERVAL_S = 60.0


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
    outcome: str = ""  # invalid, stale, event
    reason: str = ""  # of a dead letter
    calls: list[Call] = field(default_factory=list)

    def bound(self) -> AbstractContextManager[Any]:
        """Its event bound for the log lines about it: ``sid`` (the recording it is
        admitted to, once decided), ``sequence``, ``notice_id``; nothing before it
        was parsed."""
        if self.event is None:
            return nullcontext()
        return structlog.contextvars.bound_contextvars(
            sid=self.sid or self.event.sid, sequence=self.event.sequence,
            notice_id=self.event.notice_id)


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
    def _dead_letter(self, item: _Item, counter: str, now_ms: int, **fields: Any) -> None:
        entry = item.entry
        item.reason = fields["reason"]
        letter = deadletters.entry_fields(
            kind=deadletters.BODY, body=entry.body, meta=entry.meta.as_dict(),
            extra={"entry": entry.entry_id}, now_ms=now_ms, **fields)
        item.calls.append(lambda p: q_settle_entry(
            p, entry.entry_id, {counter: 1}, letter, self.settings.deadletter_maxlen))

    def _classify(self, entry: InboxEntry, now_ms: int) -> _Item:
        from agora_callbacks.schemas import InvalidEvent, parse_event

        item = _Item(entry)
        settings = self.settings
        try:
            event = parse_event(entry.body)
        except InvalidEvent as exc:
            item.outcome = "invalid"
            detail = json.dumps(getattr(exc, "messages", {}), default=str)[:8000]
            reason = str(getattr(exc, "reason", "invalid"))
            self._dead_letter(item, "invalid", now_ms, reason=reason, detail=detail)
            log.warning("invalid body dead-lettered", entry=entry.entry_id, reason=reason,
                        request_id=entry.meta.request_id)
            return item
        item.event = event
        item.key = dedupe_key(event, settings.dedupe_key)
        with item.bound():
            cutoff = now_ms - settings.dedupe_ttl_s * 1000
            if (entry.meta.origin is None and event.notify_ms is not None
                    and event.notify_ms < cutoff):
                item.outcome = "stale"
                self._dead_letter(
                    item, "stale", now_ms, reason="stale", key=item.key,
                    detail=f"notifyMs {event.notify_ms} is older than the dedupe window "
                           f"({settings.dedupe_ttl_s} s): a replayed capture")
                log.warning("stale body dead-lettered", notify_ms=event.notify_ms)
                return item
            item.handlers = REGISTRY.names_for(event.event_type, event.msg_name)
            if not item.handlers and settings.builtin_handlers:
                # Still folded into its record, by the turn's publisher (no task).
                item.handlers = (FOLD_SLOT,)
            record = Record(handlers=item.handlers, key=item.key, meta=entry.meta.as_dict(),
                            entry_id=entry.entry_id, body=entry.body,
                            notice_id=event.notice_id)
            item.outcome = "event"
            if is_ordered(event):
                item.sid = str(event.sid)
                fld = dedupe_field(event, settings.dedupe_key)
                seq = int(event.sequence or 0)
            else:
                item.sid = keys.unordered_sid(event.notice_id)
                fld, seq = f"n:{event.notice_id}", 0
            item.calls.append(lambda p: self.rt.ordering.q_admit(
                p, item.sid, fld, seq, entry.entry_id, record))
        return item

    def process(self, entries: list[InboxEntry]) -> int:
        """Settle a batch; return how many entries were settled by this call (or
        found settled before)."""
        if not entries:
            return 0
        # Redis's clock (not this host's): the stale-replay cutoff and dead letters.
        now_ms = self.rt.clock.now_ms(self.client)
        items = [self._classify(e, now_ms) for e in entries]
        calls = [c for it in items for c in it.calls]
        results = scripts.run(self.client, calls)
        settled = 0
        for item, result in zip(items, results, strict=True):
            if isinstance(result, Exception):
                with item.bound():
                    log.error("could not settle a body, left for a retry",
                              entry=item.entry.entry_id, error=str(result))
                continue
            if item.outcome == "event":
                self._admitted(item, result)
            elif item.reason and int(result or 0) > 0:
                metrics.DEADLETTERED.labels(deadletters.BODY, item.reason).inc()
            settled += 1
        return settled

    def _admitted(self, item: _Item, reply: Any) -> None:
        admitted = parse_admit(reply)
        with item.bound():
            if admitted.status == "dup":
                log.info("duplicate dropped", key=item.key)
            elif admitted.status == "admitted":
                log.info("admitted", key=item.key, handlers=item.handlers)
            else:
                log.info("admitted again after a redelivery", key=item.key)
        self.dispatcher.dispatch(item.sid, admitted.turn)

    # -- the loop -----------------------------------------------------------------
    def run(self, stop: threading.Event, on_round: Callable[[], None] | None = None) -> None:
        """Read, settle, sweep and take over, until ``stop`` is set; ``on_round`` is
        called at the start of every round (and of every sweep of a long backlog), so
        that a watcher can tell a hung loop."""
        next_sweep = next_claim = next_cleanup = 0.0
        group_ready = False
        claim_interval = min(CLAIM_INTERVAL_S, self.settings.claim_idle_ms / 2000)
        beat = on_round or (lambda: None)
        # A failed round is tried again after 0.5 s: one line per outage, not per round.
        streak = FailureStreak(log, "intake round")
        log.info("intake started", consumer=self.consumer)
        while not stop.is_set():
            beat()
            try:
                if not group_ready:
                    self.ensure_group()
                    group_ready = True
                now = time.monotonic()
                if now >= next_cleanup:
                    # Consumers of dead workers, once their entries were taken over,
                    # are only names: remove them (atomically: only those holding
                    # nothing), so the list does not grow with every restart.
                    next_cleanup = now + CONSUMER_CLEANUP_INTERVAL_S
                    removed = remove_idle_consumers(
                        self.client, keys.INBOX, keys.INBOX_GROUP,
                        idle_ms=int(CONSUMER_CLEANUP_INTERVAL_S * 1000), keep=self.consumer)
                    if removed:
                        log.info("removed idle inbox consumers", consumers=removed)
                if now >= next_claim:
                    next_claim = now + claim_interval
                    self.process(self.autoclaim())
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL_S
                    while timers.sweep(self.dispatcher) >= 100 and not stop.is_set():
                        beat()
                block = max(1, int((next_sweep - time.monotonic()) * 1000))
                self.process(self.read(block_ms=min(block, self.block_ms)))
                streak.succeeded()
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):
                    self.ensure_group()
                    continue
                streak.failed_round(exc)
                stop.wait(0.5)
            except Exception as exc:
                streak.failed_round(exc)
                stop.wait(0.5)
        log.info("intake stopped", consumer=self.consumer)
