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
handler (same name rules, same time-option checks, ``REGISTRY``-like lookup). The
record it gets is the one right after the events that decided the phase were
folded. A hook runs at most once per recording and phase: its task may be
published again (the publisher died before it recorded the publish); the first
copy that starts claims the run (``SET NX``), the same task may run again (a Celery
retry, a redelivery after its process died), any other copy is skipped.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, TypeVar

from celery import Task

from agora_callbacks import keys, metrics
from agora_callbacks.logs import get_logger
from agora_callbacks.workers.registry import Handler, Registry, celery_task, check_broker_limits

F = TypeVar("F", bound=Callable[..., Any])

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


def hook_key(sid: str, phase: str, name: str) -> str:
    """String: the task id that claimed the run of hook ``name`` for ``phase``."""
    return keys.recording_prefix(sid) + f"hook:{phase}:{name}"


class LifecycleTask(Task):
    """Base class of lifecycle hook tasks; ``agora_handler`` is set per task."""

    agora_handler: Handler
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True

    def run_hook(self, sid: str, phase: str, info: dict[str, Any],
                 record: dict[str, Any]) -> Any:
        from agora_callbacks.workers import runtime

        rt = runtime.get()
        task_id = str(self.request.id or "")
        key = hook_key(sid, phase, self.name)
        bound = log.bind(sid=sid, phase=phase, hook=self.name)
        if task_id:
            ttl = rt.settings.record_ttl_s
            if not rt.client.set(key, task_id, nx=True, ex=ttl):
                owner = rt.client.get(key)
                owner = owner.decode() if isinstance(owner, bytes) else owner
                if owner != task_id:
                    bound.info("hook copy skipped: the hook ran for this phase already")
                    return None
        started = time.monotonic()
        offered = {"phase": phase, "info": info}
        try:
            result = self.agora_handler.fn(
                record, **{k: v for k, v in offered.items() if k in self.agora_handler.kwargs})
        except BaseException:
            metrics.HANDLER_FAILURES.labels(self.name).inc()
            raise
        finally:
            metrics.HANDLER_DURATION.labels(self.name).observe(time.monotonic() - started)
        bound.info("lifecycle hook done", ms=round((time.monotonic() - started) * 1000, 2))
        return result


def _make_task(handler: Handler, options: dict[str, Any]) -> Any:
    def run(self: LifecycleTask, sid: str, phase: str, info: dict[str, Any],
            record: dict[str, Any]) -> Any:
        return self.run_hook(sid, phase, info, record)

    return celery_task(handler, LifecycleTask, run, options)


def on_recording(*phases: str, **celery_options: Any) -> Callable[[F], F]:
    """Register the decorated function as the hook of ``phases`` of every recording."""
    if not phases:
        raise TypeError(f"on_recording needs a phase: one of {', '.join(PHASES)}")
    for phase in phases:
        if phase not in PHASES:
            raise ValueError(f"on_recording: unknown phase {phase!r}; one of "
                             f"{', '.join(PHASES)}")

    def decorate(fn: F) -> F:
        handler: Handler | None = getattr(fn, "__agora_hook__", None)
        if handler is None:
            from agora_callbacks.workers.app import celery_app

            name = str(celery_options.pop("name", f"{fn.__module__}.{fn.__qualname__}"))
            if "," in name or "\n" in name or "|" in name:
                raise ValueError(f"hook name {name!r} may not contain ',', '|' or a newline")
            check_broker_limits(name, celery_options, celery_app.conf.task_time_limit)
            handler = Handler(name=name, fn=fn, kwargs=_accepted(fn))
            handler.task = _make_task(handler, celery_options)
            fn.__agora_hook__ = handler  # type: ignore[attr-defined]
            fn.task = handler.task  # type: ignore[attr-defined]
        elif celery_options:
            raise TypeError(f"{handler.name}: give Celery options to one @on_recording only")
        HOOKS.add(handler, phases)
        return fn

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
