"""Lifecycle hooks: ``@on_recording(phase)`` runs a function once per recording.

    from agora_callbacks import on_recording

    @on_recording("files_ready", queue="files")   # Celery options pass through
    def publish(recording): ...                   # the folded record (a dict)

Phases: ``started``, ``files_ready``, ``finished``, ``failed``, ``stalled``
(``workers.builtin.phases`` defines them; README, "Recording lifecycle"). The
function may also accept ``phase`` (its name) and ``info`` (what fired it:
``at_ms``, ``sequence``, ``source``, and ``reason`` for ``failed``), which is also
``recording["lifecycle"]["fired"][phase]``.

Each hook is a Celery task (``LifecycleTask``), registered like an ``on_event``
handler (same name rules, same time-option checks, ``REGISTRY``-like lookup, the
same routing: ``queue=`` and the like through the app's ``task_routes``). The
record it gets is the one right after the events that decided the phase were
folded. A hook runs at most once per recording and phase: its task may be
published again (the publisher died before it recorded the publish); the first
copy that starts claims the run (``SET NX``), the same task may run again (a Celery
retry, a redelivery after its process died) until the run has an outcome, any
other copy is skipped (``workers.hook_runs``).

- A success (or Celery's ``Ignore``) marks the claim ``done``: no copy runs the hook
  again, not even one with the same task id (redelivered after the run, before its
  acknowledgement).
- A final failure (an exception not retried or past its retries, ``Reject``
  without requeue, a soft or hard time limit) marks it ``failed`` and writes a
  dead letter of kind ``hook`` in the same step (``hook_outcome.lua``): reason
  ``handler_failed`` (``rejected`` for a ``Reject``), the traceback, the record
  the hook got as the body, ``sid``, ``phase`` and ``info`` in ``extra``.
  ``agora-callbacks dlq requeue`` runs it again (``agora_callbacks.redrive``):
  ``info["redrive"]`` names the dead letter, and the re-run claims a key of its own.
- A Redis error at the claim or at the outcome is tried again with backoff for up
  to ``REDIS_RETRY_S`` (``workers.dispatch.retrying``); a claim that still fails,
  or that the task's soft time limit interrupts, is retried by Celery
  (``self.retry``, or back to the queue once the task's own retries are used up
  or when the retry cannot be published), so the hook is never acknowledged
  without running.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, cast

from celery.exceptions import (
    Ignore,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
)

from agora_callbacks import deadletters, metrics
from agora_callbacks.logs import get_logger
from agora_callbacks.workers import hook_runs, runtime
from agora_callbacks.workers.dispatch import TRANSIENT, failure_of, retrying
from agora_callbacks.workers.hook_runs import HookRun
from agora_callbacks.workers.hook_runs import hook_key as hook_key
from agora_callbacks.workers.ordering import Failure
from agora_callbacks.workers.registry import (
    BoundedRetryTask,
    Handler,
    P,
    Registered,
    Registry,
    T,
    celery_task,
    check_broker_limits,
    check_callable,
)

#: The phases a hook may be registered for.
PHASES = ("started", "files_ready", "finished", "failed", "stalled")
HOOK_KWARGS = ("phase", "info")

log = get_logger("workers.hooks")

#: Hooks registered in this process, selected by phase name.
HOOKS = Registry()


class _State:
    #: True once this process imported the handler modules (a worker): it then
    #: knows every hook of the deployment, and a phase without one needs no publish.
    loaded = False


STATE = _State()


def names_for(phase: str) -> tuple[str, ...]:
    """Task names of the hooks of ``phase``."""
    return HOOKS.names_for(-1, phase)


def _accepted(fn: Callable[..., Any]) -> frozenset[str]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return frozenset(HOOK_KWARGS)
    return frozenset(p.name for p in params if p.name in HOOK_KWARGS and p.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY))


class LifecycleTask(BoundedRetryTask):
    """Base class of lifecycle hook tasks; ``agora_handler`` is set per task."""

    agora_handler: Handler
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def run_hook(self, sid: str, phase: str, info: dict[str, Any],
                 record: dict[str, Any]) -> Any:
        run = HookRun.of((sid, phase, info, record), self.name, str(self.request.id or ""))
        bound = log.bind(sid=sid, phase=phase, hook=self.name)
        if run.task_id and not self._claimed(run):
            self.request.agora_skipped = True
            bound.info("hook copy skipped: the hook ran for this phase already")
            return None
        self.request.agora_started = True
        started = time.monotonic()
        offered = {"phase": phase, "info": info}
        try:
            self.agora_handler.fn(
                record, **{k: v for k, v in offered.items() if k in self.agora_handler.kwargs})
        except Ignore:
            # Done, nothing to report; Celery calls no on_success for it.
            bound.info("lifecycle hook ignored the phase")
            self._record_in_run(run, None)
            raise
        except Reject as exc:
            if exc.requeue:  # back to the queue: the same task runs it again
                bound.info("lifecycle hook rejected with requeue; it will run again")
                raise
            # Refused for good; Celery calls no on_failure for a Reject.
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            self._record_in_run(run, failure_of(exc, None, reason="rejected"))
            raise
        except BaseException:
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            raise
        finally:
            metrics.HANDLER_DURATION.labels(self.name).observe(time.monotonic() - started)
        bound.info("lifecycle hook done", ms=round((time.monotonic() - started) * 1000, 2))
        # Not the hook's return value: Celery's "succeeded" line would print it (the
        # record it was given, returned as is), and nothing uses it (ignore_result).
        return None

    def _claimed(self, run: HookRun) -> bool:
        """Whether this copy may run (``hook_runs.claim``). Redis away past
        ``REDIS_RETRY_S``, or the task's soft time limit striking while the claim
        is tried again (a hook's own limit may be shorter): Celery runs the task
        again later, never acknowledging it without running (``_run_again``)."""
        rt = runtime.get()
        try:
            return retrying(rt, "hook claim", lambda: hook_runs.claim(
                rt.client, run, rt.settings.record_ttl_s))
        except (*TRANSIENT, SoftTimeLimitExceeded) as exc:
            raise self._run_again(run, exc) from exc

    def _run_again(self, run: HookRun, exc: Exception) -> Retry | Reject:
        """What to raise when the claim could not be made: ``self.retry`` with a
        countdown; once the task's own retries are used up, when the countdown would
        leave the retried run no time (``BoundedRetryTask.retry``), or when the retry
        cannot be published (the broker, by default the same Redis, is away too:
        Celery's ``retry`` then raises ``Reject`` without requeue, which would drop
        the task), back to the queue (``Reject`` with requeue)."""
        bound = log.bind(sid=run.sid, phase=run.phase, hook=self.name,
                         error=type(exc).__name__)
        if self.max_retries is None or self.request.retries < self.max_retries:
            try:
                retry = self.retry(exc=exc, countdown=runtime.get().settings.redis_retry_s,
                                   throw=False)
            except Reject as unpublished:
                bound.warning("hook claim failed and its retry could not be published; "
                              "back to the queue", publish_error=str(unpublished.reason))
                return Reject(exc, requeue=True)
            except ValueError as no_time:
                # The countdown would leave the retried run no time below the
                # broker's redelivery horizon (BoundedRetryTask.retry).
                bound.warning("hook claim failed and a retry would have no time to run; "
                              "back to the queue", reason=str(no_time))
                return Reject(exc, requeue=True)
            bound.warning("hook claim failed; the task is retried")
            return retry
        bound.warning("hook claim failed past the task's retries; back to the queue")
        return Reject(exc, requeue=True)

    def _record_in_run(self, run: HookRun, failure: Failure | None) -> None:
        """``_record`` from ``run_hook`` (``Ignore``, ``Reject``): if it raises,
        ``on_failure`` must not record the Redis error as the hook's failure."""
        self.request.agora_recorded = True
        self._record(run, failure)

    def _record(self, run: HookRun, failure: Failure | None) -> None:
        """Record the run's outcome once (``hook_runs.record_outcome``), retried on
        a Redis error for up to ``REDIS_RETRY_S``, then raised (logged, never
        dropped silently)."""
        rt = runtime.get()
        bound = log.bind(sid=run.sid, phase=run.phase, hook=self.name)
        if run.info.get("redrive"):
            bound = bound.bind(redrive=run.info["redrive"])
        try:
            reply = retrying(rt, "hook outcome", lambda: hook_runs.record_outcome(
                rt.client, run, failure, maxlen=rt.settings.deadletter_maxlen,
                ttl_s=rt.settings.record_ttl_s, now_ms=rt.clock.script_ms()))
        except Exception as exc:
            bound.error("lifecycle hook outcome not recorded", task_id=run.task_id,
                        outcome="done" if failure is None else failure.reason,
                        error=type(exc).__name__)
            raise
        if reply == hook_runs.STALE:
            bound.warning("lifecycle hook outcome not recorded: the run is no longer "
                          "this task's", task_id=run.task_id)
        elif failure is not None:
            metrics.DEADLETTERED.labels(deadletters.HOOK, failure.reason).inc()
            bound.warning("lifecycle hook rejected the phase, dead-lettered"
                          if failure.reason == "rejected"
                          else "lifecycle hook failed, dead-lettered",
                          reason=failure.reason, dead_letter=reply,
                          exception=failure.exception.partition(":")[0])

    def on_success(self, retval: Any, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> None:
        if getattr(self.request, "agora_started", False):
            self._record(HookRun.of(args, self.name, task_id), None)

    def on_failure(self, exc: BaseException, task_id: str, args: tuple[Any, ...],
                   kwargs: dict[str, Any], einfo: Any) -> None:
        # Only a run that claimed the hook has an outcome to record. A hard time
        # limit runs this in the worker's main process, where the request is
        # empty: its hook was running (the script checks the claim is this task's).
        started = getattr(self.request, "agora_started", False)
        if isinstance(exc, TimeLimitExceeded) or (
                started and not getattr(self.request, "agora_recorded", False)):
            self._record(HookRun.of(args, self.name, task_id), failure_of(exc, einfo))
        elif not started:
            log.warning("hook task failed before its claim", hook=self.name,
                        exception=type(exc).__name__)


def _make_task(handler: Handler, options: dict[str, Any]) -> Any:
    def run(self: LifecycleTask, sid: str, phase: str, info: dict[str, Any],
            record: dict[str, Any]) -> Any:
        return self.run_hook(sid, phase, info, record)

    return celery_task(handler, LifecycleTask, run, options)


def on_recording(*phases: str,
                 **celery_options: Any) -> Callable[[Callable[P, T]], Registered[P, T]]:
    """Register the decorated function as the hook of ``phases`` of every recording."""
    if not phases:
        raise TypeError(f"on_recording needs a phase: one of {', '.join(PHASES)}")
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f"on_recording: unknown phase {phase!r}; one of "
                             f"{', '.join(PHASES)}")

    def decorate(fn: Callable[P, T]) -> Registered[P, T]:
        handler: Handler | None = getattr(fn, "__agora_hook__", None)
        if handler is None:
            from agora_callbacks.workers.application import celery_app

            name = str(celery_options.pop("name", f"{fn.__module__}.{fn.__qualname__}"))
            if "," in name or "\n" in name or "|" in name:
                raise ValueError(f"hook name {name!r} may not contain ',', '|' or a newline")
            check_broker_limits(name, celery_options, celery_app.conf.task_time_limit)
            kwargs = _accepted(fn)
            check_callable(name, fn, kwargs, "record", HOOK_KWARGS)
            handler = Handler(name=name, fn=fn, kwargs=kwargs)
            handler.task = _make_task(handler, celery_options)
            fn.__agora_hook__ = handler  # type: ignore[attr-defined]
            fn.task = handler.task  # type: ignore[attr-defined]
        elif celery_options:
            raise TypeError(f"{handler.name}: give Celery options to one @on_recording only")
        HOOKS.add(handler, phases)
        return cast("Registered[P, T]", fn)

    return decorate


def publish(sid: str, phase: str, info: dict[str, Any], record: dict[str, Any]) -> int:
    """Send the hook tasks of ``phase`` (Celery's public API); return how many."""
    names = names_for(phase)
    for name in names:
        handler = HOOKS.get(name)
        if handler is None:  # pragma: no cover - names come from HOOKS
            continue
        handler.task.apply_async(args=[sid, phase, info, record],
                                 argsrepr=f"(sid={sid!r}, phase={phase!r})", kwargsrepr="{}")
    return len(names)
