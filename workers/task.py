"""The Celery task base of every handler registered with ``@on_event``.

A handler task gets ``(sid, member, key, late, gap, meta, body)``: the recording
and its event's place in the order (an event without ``sid``/``sequence`` is the
only event of a recording of its own, ``notice:<noticeId>``; both empty for a
handler re-run from its dead letter, outside the order), the dedupe key,
the late/gap flags, the receive metadata and the raw body, which it parses again
(cheap) into the typed event for the user's function.

- Before running, it asks the recording's turn whether this copy may run
  (``start.lua``): a handler starts once per event, claimed by the first copy of
  its task that starts; the same task may run again (a Celery retry, a redelivery after its
  process died mid-run); any other copy (published again after the publish lease,
  published late, redelivered after the handler finished) is skipped.
- On success, or on final failure (retries exhausted, or an exception that is not
  retried), the handler's part of the turn ends (``finish.lua``, which writes the
  dead letter of a final failure in the same step, kind ``handler``, and the run,
  with the duration measured here, on the dashboard's timeline of the recording)
  and, when it was the last one, the recording's next event is dispatched from
  this process.
  A Redis error there is tried again with backoff for up to ``REDIS_RETRY_S``.
  A retry (``self.retry``, ``autoretry_for``) does not end the turn.
- A handler may also end its part of the turn by raising Celery's ``Ignore``
  (done, as on success, no dead letter) or ``Reject`` (a dead letter with reason
  ``rejected``, as on final failure); Celery calls neither ``on_success`` nor
  ``on_failure`` for them, so ``run_handler`` does it. ``Reject(requeue=True)``
  sends the message back to the queue: the handler runs again and the turn waits.
- In a pool process, the task returns (and is acknowledged) as soon as its
  handler's part of the turn has ended; publishing the next event's handler
  tasks is handed to a thread of the process (``_AfterHandler``), so that this
  round trip overlaps the next task instead of delaying it. Nothing depends on
  that thread: ``finish`` took the next event under a ``DISPATCH_LEASE_MS``
  publish lease with the recording's timer set to it, so if the process dies
  first, the timer sweep publishes the event again, as after any crash there.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from celery import signals
from celery.exceptions import Ignore, Reject, TimeLimitExceeded

from agora_callbacks import keys, metrics, recording_timeline
from agora_callbacks.logs import get_logger
from agora_callbacks.workers import runtime
from agora_callbacks.workers.dispatch import Dispatcher, failure_of
from agora_callbacks.workers.ordering import Failure, Turn, sequence_of
from agora_callbacks.workers.registry import BoundedRetryTask, Handler, celery_task

log = get_logger("workers.task")


class _AfterHandler:
    """One thread per pool process that publishes the next event of recordings
    whose turn a handler ended (see the module docstring). Off (work done inline)
    outside pool processes: eager tasks, tests, the worker's main process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._executor: ThreadPoolExecutor | None = None

    def enable(self) -> None:
        with self._lock:
            self._pid = os.getpid()
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="agora-after-handler")

    def drain(self) -> None:
        """Wait for what was handed over (the pool process is about to exit)."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None and self._pid == os.getpid():
            executor.shutdown(wait=True)

    def submit(self, dispatcher: Dispatcher, sid: str, turn: Turn) -> None:
        executor = self._executor
        if executor is None or self._pid != os.getpid():
            dispatcher.dispatch(sid, turn)
            return
        executor.submit(self._run, dispatcher, sid, turn)

    @staticmethod
    def _run(dispatcher: Dispatcher, sid: str, turn: Turn) -> None:
        try:
            dispatcher.dispatch(sid, turn)
        except Exception:
            # The turn's publish lease runs out: the timer sweep publishes it.
            log.exception("next event not published; the timer sweep will", sid=sid,
                          member=turn.member)


AFTER_HANDLER = _AfterHandler()


@signals.worker_process_init.connect
def _enable_after_handler(**kwargs: Any) -> None:
    AFTER_HANDLER.enable()


@signals.worker_process_shutdown.connect
def _drain_after_handler(**kwargs: Any) -> None:
    AFTER_HANDLER.drain()


class HandlerTask(BoundedRetryTask):
    """Base class of handler tasks. ``agora_handler`` is set per task."""

    agora_handler: Handler
    #: Acknowledge after the run (a killed worker's task is redelivered), also
    #: set app-wide; repeated here so a handler cannot opt out by accident.
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def run_handler(self, sid: str, member: str, key: str, late: bool,
                    gap: list[int] | None, meta: dict[str, Any], body: str) -> Any:
        from agora_callbacks.schemas import parse_event

        dispatcher = Dispatcher(runtime.get())
        seq = sequence_of(member) if member else None
        shown_sid = None if not sid or keys.is_unordered_sid(sid) else sid
        structlog.contextvars.bind_contextvars(sid=shown_sid, sequence=seq, key=key,
                                               handler=self.name)
        if not dispatcher.handler_start(sid, member, key, self.name, self._task_id()):
            self.request.agora_skipped = True
            return None
        self.request.agora_started = True
        event = self.request.agora_event = parse_event(body.encode("utf-8"))
        structlog.contextvars.bind_contextvars(notice_id=event.notice_id)
        started = self.request.agora_started_at = time.monotonic()
        args = (sid, member, key, late, gap, meta, body)
        try:
            self.agora_handler.call(event, key=key, late=bool(late),
                                    gap=(gap[0], gap[1]) if gap else None)
        except Ignore:
            # The handler's choice: done with this event, nothing to report. Celery
            # calls neither on_success nor on_failure for it: end the turn here.
            log.info("handler ignored the event")
            self._finish(args)
            raise
        except Reject as exc:
            if exc.requeue:
                # Back to the queue: the handler runs again, the turn waits for it.
                log.info("handler rejected the event with requeue; it will run again")
                raise
            # The handler refused the event for good: a dead letter, then the
            # recording moves on (Celery calls no on_failure for a Reject either).
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            self._finish(args, failure_of(exc, None, reason="rejected"))
            raise
        except BaseException:
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            raise
        finally:
            elapsed = time.monotonic() - started
            self.request.agora_duration_ms = elapsed * 1000
            metrics.HANDLER_DURATION.labels(self.name).observe(elapsed)
        log.info("handler done", ms=round(elapsed * 1000, 2))
        # The handler's return value is not used (ignore_result): not returned to
        # Celery either, whose "succeeded" log line would print its repr (an
        # ``Event`` returned as is: the body's values, in the log).
        return None

    def _task_id(self) -> str:
        """The id that fences this task's start: the same across its retries and
        redeliveries, different for every other copy."""
        return str(self.request.id or "")

    def _finish(self, args: tuple[Any, ...], failure: Failure | None = None,
                task_id: str | None = None) -> None:
        """End this handler's part of the turn. ``task_id``: Celery's argument to
        ``on_success``/``on_failure`` (for a hard time limit, ``on_failure`` runs in
        the worker's main process, where ``self.request`` is empty)."""
        sid, member, key, _, _, meta, body = args
        dispatcher = Dispatcher(runtime.get())
        duration_ms = self._duration_ms()
        turn = dispatcher.handler_done(sid, member, key, self.name,
                                       task_id or self._task_id(), failure,
                                       body=str(body).encode(), meta=dict(meta or {}),
                                       duration_ms=duration_ms)
        if turn is not None:
            AFTER_HANDLER.submit(dispatcher, sid, turn)
        if not sid:
            self._note_rerun(args, failure, duration_ms)

    def _duration_ms(self) -> float | None:
        """How long the handler ran (None: unknown, e.g. a hard time limit, reported
        in the worker's main process)."""
        measured = getattr(self.request, "agora_duration_ms", None)
        if measured is not None:
            return float(measured)
        started = getattr(self.request, "agora_started_at", None)
        return None if started is None else (time.monotonic() - started) * 1000

    def _note_rerun(self, args: tuple[Any, ...], failure: Failure | None,
                    duration_ms: float | None) -> None:
        """A re-run from a dead letter (outside the order: no ``finish.lua`` records
        it) on the dashboard's timeline of its recording
        (``agora_callbacks.recording_timeline``): best effort, after its outcome is
        recorded; a failure here changes nothing else."""
        sid, _, key, late, gap, meta, body = args
        try:
            rt = runtime.get()
            recording_timeline.handler_finished(
                rt.client, rt.settings.record_ttl_s, sid=sid, key=key, late=late,
                gap=gap, meta=dict(meta or {}), body=str(body), handler=self.name,
                outcome="done" if failure is None else failure.reason,
                duration_ms=duration_ms,
                exception="" if failure is None else failure.exception,
                event=getattr(self.request, "agora_event", None))
        except Exception as exc:
            log.warning("timeline not written", error=type(exc).__name__)

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        try:
            if not getattr(self.request, "agora_skipped", False):
                self._finish(args, task_id=task_id)
        finally:
            structlog.contextvars.clear_contextvars()

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        try:
            # Only a run that passed its start has an outcome to record: a start that
            # failed (Redis away past REDIS_RETRY_S) leaves the handler to the copy
            # that holds it, or to a new publish after the publish lease. A hard
            # time limit runs this in the worker's main process, where the request
            # is empty: its handler was running.
            if (getattr(self.request, "agora_started", False)
                    or isinstance(exc, TimeLimitExceeded)):
                self._finish(args, failure_of(exc, einfo), task_id=task_id)
            else:
                log.warning("handler task failed before its start was recorded",
                            exception=type(exc).__name__)
        finally:
            structlog.contextvars.clear_contextvars()


def make_task(handler: Handler, options: dict[str, Any]) -> Any:
    """The Celery task of ``handler`` (on the app of ``agora_callbacks.workers.app``)."""

    def run(self: HandlerTask, sid: str, member: str, key: str, late: bool,
            gap: list[int] | None, meta: dict[str, Any], body: str) -> Any:
        return self.run_handler(sid, member, key, late, gap, meta, body)

    return celery_task(handler, HandlerTask, run, options)
