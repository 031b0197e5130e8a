"""The Celery task base of every handler registered with ``@on_event``.

A handler task gets ``(sid, member, key, late, gap, meta, body)``: the recording
and its event's place in the order (empty for unordered events), the dedupe key,
the late/gap flags, the receive metadata and the raw body, which it parses again
(cheap) into the typed event for the user's function.

- Before running, it asks the recording's turn whether this handler is still
  pending (``start.lua``): a copy redelivered after a crash between the end of the
  handler and its acknowledgement is skipped, not run twice.
- On success, or on final failure (retries exhausted, or an exception that is not
  retried), the handler's part of the turn ends (``finish.lua``) and, when it was
  the last one, the recording's next event is dispatched from this process. A
  final failure is dead-lettered first (kind ``handler``). A retry
  (``self.retry``, ``autoretry_for``) does not end the turn.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from celery import Task

from agora_callbacks import metrics
from agora_callbacks.logs import get_logger
from workers import runtime
from workers.dispatch import Dispatcher, dead_letter_handler, sequence_of
from workers.registry import Handler

log = get_logger("workers.task")


class HandlerTask(Task):
    """Base class of handler tasks. ``agora_handler`` is set per task."""

    agora_handler: Handler
    #: Acknowledge after the run (a killed worker's task is redelivered), also
    #: set app-wide; repeated here so a handler cannot opt out by accident.
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def run_handler(self, sid: str, member: str, key: str, late: bool,
                    gap: list[int] | None, meta: dict[str, Any], body: str) -> Any:
        from schemas import parse_event

        rt = runtime.get()
        seq = sequence_of(member) if member else None
        structlog.contextvars.bind_contextvars(sid=sid or None, sequence=seq, key=key,
                                               handler=self.name)
        if sid and self._maybe_done() and not rt.ordering.start(rt.client, sid, member,
                                                                 self.name):
            self.request.agora_skipped = True
            log.info("handler skipped: already finished for this event")
            return None
        event = parse_event(body.encode("utf-8"))
        structlog.contextvars.bind_contextvars(notice_id=event.notice_id)
        started = time.monotonic()
        try:
            result = self.agora_handler.call(event, key=key, late=bool(late),
                                             gap=(gap[0], gap[1]) if gap else None)
        except BaseException:
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            raise
        finally:
            metrics.HANDLER_DURATION.labels(self.name).observe(time.monotonic() - started)
        log.info("handler done", ms=round((time.monotonic() - started) * 1000, 2))
        return result

    def _maybe_done(self) -> bool:
        """Could this handler already have finished for this event? Only for a
        message the broker delivers again (its worker died before acknowledging it)
        or a retry (the turn may have been declared lost meanwhile); a first
        delivery skips the check (one round trip less per event). The check also
        pushes the turn's deadline back, which is what a retry needs."""
        info = self.request.delivery_info or {}
        return bool(info.get("redelivered") or self.request.retries)

    def _finish(self, args: tuple[Any, ...]) -> None:
        sid, member = args[0], args[1]
        if sid and member:
            Dispatcher(runtime.get()).handler_done(sid, member, self.name)

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        try:
            if not getattr(self.request, "agora_skipped", False):
                self._finish(args)
        finally:
            structlog.contextvars.clear_contextvars()

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        try:
            rt = runtime.get()
            dead_letter_handler(rt, name=self.name, exc=exc, einfo=einfo, args=args,
                                retries=int(self.request.retries or 0))
            self._finish(args)
        finally:
            structlog.contextvars.clear_contextvars()


def make_task(handler: Handler, options: dict[str, Any]) -> Any:
    """The Celery task of ``handler`` (on the app of ``workers.app``)."""
    from workers.app import celery_app

    def run(self: HandlerTask, sid: str, member: str, key: str, late: bool,
            gap: list[int] | None, meta: dict[str, Any], body: str) -> Any:
        return self.run_handler(sid, member, key, late, gap, meta, body)

    run.__name__ = handler.fn.__name__
    run.__qualname__ = handler.fn.__qualname__
    run.__module__ = handler.fn.__module__
    run.__doc__ = handler.fn.__doc__
    return celery_app.task(bind=True, base=HandlerTask, name=handler.name,
                           agora_handler=handler, **options)(run)
