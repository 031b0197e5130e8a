"""Publishing handler tasks, and the two ends of a handler's run.

``Dispatcher.dispatch`` publishes the handler tasks of a turn that ``take``
returned (``event``), plainly, with the runtime's publisher (Celery's public API,
``workers.publish``): nothing else depends on the publish. What makes it safe is
the fence at the other end: a handler task starts only after ``start``
(``start.lua``) admitted it, and a handler starts once per event, claimed by the
first copy of its task that starts. A copy published again (the publish lease ran
out before any copy started: the publisher died, stalled, or the message was lost)
or published late (a publisher delayed past the lease) is skipped and counted.

``handler_done`` records a handler's outcome (``finish``), retrying a Redis error
with backoff for up to ``REDIS_RETRY_S``: an outcome is never forgotten because
Redis was away for a moment. When the turn is over, the recording's next event is
published from here; if this process dies first, the recording's timer (set by
``finish`` itself to the next turn's publish lease) makes the sweep publish it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import structlog

from agora_callbacks import deadletters, keys, metrics
from agora_callbacks.logs import get_logger
from agora_callbacks.workers.ordering import (
    Failure,
    Record,
    Turn,
    sequence_of,
)
from agora_callbacks.workers.runtime import Runtime

#: The slot of an event that no user handler is registered for
#: (``workers.builtin.lifecycle.FOLD_SLOT``), finished by its publisher.
FOLD_SLOT = "agora_callbacks.fold"
#: The owner of that slot as ``take`` leaves it (published, not started).
FOLD_OWNER = "-"

log = get_logger("workers.dispatch")

T = TypeVar("T")

#: Redis errors that are worth trying again: the server is away for a moment
#: (restart, failover, ``CLIENT PAUSE``, a latency spike past the timeout), or its
#: script cache was flushed again between loading the scripts and the retry.
TRANSIENT: tuple[type[Exception], ...] = (
    redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError, redis.exceptions.TryAgainError,
    redis.exceptions.NoScriptError,
)


def task_args(sid: str, member: str, record: Record, late: bool,
              gap: tuple[int, int] | None) -> list[Any]:
    """Arguments of a handler task (see ``workers.task.HandlerTask.run_handler``)."""
    return [sid, member, record.key, late, list(gap) if gap else None, record.meta,
            record.body.decode("utf-8", "replace")]


def retrying(rt: Runtime, what: str, call: Callable[[], T]) -> T:
    """``call()``, tried again with backoff on a transient Redis error, for up to
    ``REDIS_RETRY_S``; the last error is raised after that."""
    budget_ms = rt.settings.redis_retry_s * 1000
    delay = 0.05
    slept_ms = 0
    began = rt.clock.monotonic()
    while True:
        try:
            return call()
        except TRANSIENT as exc:
            # The attempts' own time counts (a timeout is REDIS_TIMEOUT_S), and so do
            # the sleeps (on the runtime's clock, which a test may drive).
            waited_ms = max(slept_ms, int((rt.clock.monotonic() - began) * 1000))
            if waited_ms >= budget_ms:
                log.error(f"{what} failed, giving up", error=str(exc), waited_ms=waited_ms)
                raise
            log.warning(f"{what} failed, trying again", error=str(exc),
                        retry_in_ms=int(delay * 1000))
            rt.clock.sleep(delay)
            slept_ms += int(delay * 1000)
            delay = min(delay * 2, 2.0)


class Dispatcher:
    """Publishes turns and records handler outcomes for one process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- publishing ---------------------------------------------------------------
    def dispatch(self, sid: str, turn: Turn | None) -> None:
        """Fold the event of ``turn`` into its record and publish its handler tasks,
        if it is an ``event``. A turn whose only slot is ``FOLD_SLOT`` (no user
        handler) ends here, and the recording's next turn is dispatched in turn."""
        while turn is not None and turn.dispatch:
            turn = self._dispatch(sid, turn)

    def _dispatch(self, sid: str, turn: Turn) -> Turn | None:
        assert turn.record is not None
        # Every line of this turn's decisions carries its event (the fold's, its
        # retries', the publish's), wherever it runs: the intake, the sweep, a pool
        # process's after-handler thread; as the intake's lines do, with the sid as
        # the turn names it.
        with structlog.contextvars.bound_contextvars(
                sid=sid, sequence=sequence_of(turn.member),
                notice_id=turn.record.notice_id or None):
            return self._dispatch_bound(sid, turn)

    def _dispatch_bound(self, sid: str, turn: Turn) -> Turn | None:
        assert turn.record is not None
        if not self._fold(sid, turn):
            return None  # published again after the lease, folded then
        handlers = tuple(h for h in turn.handlers if h != FOLD_SLOT)
        if handlers:
            self.rt.publish(handlers,
                            task_args(sid, turn.member, turn.record, turn.late, turn.gap))
        if turn.republished:
            log.warning("handlers published again: none started within the publish lease",
                        handlers=turn.handlers)
        else:
            if turn.late:
                log.info("late event dispatched", handlers=turn.handlers)
            if turn.gap:
                log.info("gap skipped", gap=list(turn.gap))
            log.info("dispatched", key=turn.record.key, handlers=turn.handlers, late=turn.late,
                     gap=list(turn.gap) if turn.gap else None)
        if FOLD_SLOT not in turn.handlers:
            return None
        rt = self.rt
        finished = retrying(rt, "fold finish", lambda: rt.ordering.finish(
            rt.client, sid, turn.member, FOLD_SLOT, FOLD_OWNER, run=False))
        return finished.turn

    def _fold(self, sid: str, turn: Turn) -> bool:
        """Fold the turn's event into its recording's record (the built-in record,
        ``BUILTIN_HANDLERS``). False: Redis failed, leave the turn to its publish
        lease (the sweep publishes and folds it again)."""
        rt = self.rt
        if not rt.settings.builtin_handlers or keys.is_unordered_sid(sid):
            return True
        record = turn.record
        assert record is not None
        from agora_callbacks.schemas import parse_event
        from agora_callbacks.workers.builtin import lifecycle

        try:
            event = parse_event(record.body)
            # The turn's reply brought the record and the clock: no read first.
            outcome = retrying(rt, "fold", lambda: lifecycle.fold_event(
                rt.client, rt.settings, sid, event, key=record.key, late=turn.late,
                gap=turn.gap, now_ms=turn.now_ms, turn=turn.member, state=turn.state,
                meta=record.meta))
        except redis.RedisError as exc:
            metrics.RECORD_FOLDS.labels("failed").inc()
            log.error("fold failed; the turn is published and folded again after its "
                      "lease", error=str(exc))
            return False
        except Exception:
            # A bug in a fold rule must not stop the recording: its handlers still run.
            metrics.RECORD_FOLDS.labels("failed").inc()
            log.exception("fold failed; the event is missing from the record")
            return True
        metrics.RECORD_FOLDS.labels({"saved": "folded", "unchanged": "already"}.get(
            outcome.status, outcome.status)).inc()
        return True

    # -- the two ends of a handler's run ------------------------------------------------
    def handler_start(self, sid: str, member: str, key: str, name: str, task_id: str) -> bool:
        """May this copy of the handler task run? (the fence of "once"). A task
        without a recording (``sid`` empty: a handler re-run from its dead letter by
        an operator, ``agora-callbacks dlq redrive``) runs outside the order."""
        if not sid:
            return True
        rt = self.rt
        ok = retrying(rt, "handler start", lambda: rt.ordering.start(
            rt.client, sid, member, name, task_id))
        if not ok:
            log.info("handler copy skipped: the handler started or finished already",
                     handler=name, task_id=task_id)
        return ok

    def handler_done(self, sid: str, member: str, key: str, name: str, task_id: str,
                     failure: Failure | None = None, body: bytes = b"",
                     meta: dict[str, Any] | None = None,
                     duration_ms: float | None = None) -> Turn | None:
        """Record the handler's outcome (its dead letter with it if ``failure``, and
        the run on the recording's timeline, with ``duration_ms``); return the
        recording's next turn when this one is over, for ``dispatch``.
        Once it returns, the outcome is in Redis: if nobody publishes the returned
        turn (this process dies), the timer sweep does after ``DISPATCH_LEASE_MS``."""
        rt = self.rt
        if not sid:
            if failure is not None:
                retrying(rt, "handler dead letter", lambda: deadletters.add(
                    rt.client, rt.settings.deadletter_maxlen, kind=deadletters.HANDLER,
                    reason=failure.reason, detail=failure.detail, body=body, meta=meta or {},
                    key=key, handler=name, exception=failure.exception,
                    now_ms=rt.clock.now_ms(rt.client)))
            return None
        finished = retrying(rt, "handler finish", lambda: rt.ordering.finish(
            rt.client, sid, member, name, task_id, failure, duration_ms=duration_ms))
        if finished.status == "stale":
            log.warning("handler outcome not recorded: the handler is no longer this task's",
                        handler=name, task_id=task_id)
        elif failure is not None:
            metrics.DEADLETTERED.labels(deadletters.HANDLER, failure.reason).inc()
            log.warning("handler rejected the event, dead-lettered"
                        if failure.reason == "rejected" else "handler failed, dead-lettered",
                        handler=name, exception=failure.exception.partition(":")[0])
        return finished.turn


def failure_of(exc: BaseException, einfo: Any, reason: str = "handler_failed") -> Failure:
    """The dead letter of a handler that failed for good (``handler_failed``) or
    rejected its event (``rejected``)."""
    tb = str(getattr(einfo, "traceback", "") or "".join(traceback.format_exception(exc)))
    return Failure(reason=reason, detail=tb[-8000:], exception=f"{type(exc).__name__}: {exc}")

