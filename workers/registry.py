"""Handler registration: ``@on_event`` turns a function into a Celery task.

    from agora_callbacks.workers import on_event

    @on_event("uploaded")           # by msgName
    @on_event(31, queue="files")    # by eventType; Celery options pass through
    def store_files(event, key, late, gap): ...

Each handler is one Celery task named ``<module>.<qualname>`` (or ``name=``), with
the base class ``workers.task.HandlerTask``. Selectors: a ``msgName`` (str), an
``eventType`` (int) or ``"*"`` for every event; several may be given in one call
or in stacked calls, but Celery options only in one of them. The function gets
the typed event and, if its signature accepts them, ``key`` (dedupe key),
``late`` (bool) and ``gap`` (``(first, last)`` sequences skipped just before this
event, or ``None``). ``on_event`` returns the function itself, so it stays
callable in the user's tests; its task is ``fn.task``.

Every handler task has the app's time limits (``task_time_limit`` and
``task_soft_time_limit``, below the broker's redelivery horizon,
``Settings.handler_redelivery_s``: ``HANDLER_VISIBILITY_TIMEOUT_S`` on Redis,
``RABBITMQ_CONSUMER_TIMEOUT_S`` and half ``HANDLER_DEADLINE_S`` on RabbitMQ), so
that the broker never delivers it again while it still runs. A handler may lower
them; one whose ``time_limit``, ``soft_time_limit`` or retry delay
(``default_retry_delay``, or ``retry_backoff_max`` with ``retry_backoff``) would
reach the horizon is refused at registration (``check_time_options``).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

Selector = str | int
F = TypeVar("F", bound=Callable[..., Any])

#: Keyword arguments a handler may declare, besides the event.
OPTIONAL_KWARGS = ("key", "late", "gap")
EVERY = "*"


@dataclass
class Handler:
    """One registered handler: its task name, function, selectors and task."""

    name: str
    fn: Callable[..., Any]
    kwargs: frozenset[str]
    selectors: set[Selector] = field(default_factory=set)
    task: Any = None

    def call(self, event: Any, *, key: str, late: bool, gap: tuple[int, int] | None) -> Any:
        offered = {"key": key, "late": late, "gap": gap}
        return self.fn(event, **{k: v for k, v in offered.items() if k in self.kwargs})


def accepted_kwargs(fn: Callable[..., Any]) -> frozenset[str]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return frozenset(OPTIONAL_KWARGS)
    names = {p.name for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                   inspect.Parameter.KEYWORD_ONLY)}
    return frozenset(names & set(OPTIONAL_KWARGS))


class Registry:
    """Handlers by name, and which of them match an event."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._cache: dict[tuple[int, str | None], tuple[str, ...]] = {}

    def add(self, handler: Handler, selectors: Iterable[Selector]) -> None:
        for sel in selectors:
            if isinstance(sel, bool) or not isinstance(sel, str | int):
                raise TypeError(f"on_event selector must be a msgName, an eventType or '*', "
                                f"got {sel!r}")
        with self._lock:
            existing = self.handlers.get(handler.name)
            if existing is not None and existing is not handler:
                raise ValueError(f"a handler named {handler.name!r} is already registered")
            self.handlers[handler.name] = handler
            handler.selectors.update(selectors)
            self._cache.clear()

    def remove(self, name: str) -> None:
        with self._lock:
            self.handlers.pop(name, None)
            self._cache.clear()

    def get(self, name: str) -> Handler | None:
        return self.handlers.get(name)

    def names_for(self, event_type: int, msg_name: str | None) -> tuple[str, ...]:
        """Sorted names of the handlers an event with this type and msgName goes to."""
        cache_key = (event_type, msg_name)
        found = self._cache.get(cache_key)
        if found is None:
            found = tuple(sorted(
                h.name for h in self.handlers.values()
                if EVERY in h.selectors or event_type in h.selectors
                or (msg_name is not None and msg_name in h.selectors)
            ))
            self._cache[cache_key] = found
        return found


#: Celery's own defaults of the retry options (``celery.app.task.Task``), used when
#: a handler that can retry does not give them.
CELERY_DEFAULT_RETRY_DELAY = 180
CELERY_DEFAULT_RETRY_BACKOFF_MAX = 600


def check_time_options(name: str, options: dict[str, Any], *, visibility_timeout_s: float,
                       time_limit_s: float | None,
                       limit_name: str | None = None) -> None:
    """Refuse Celery options that would let a handler task be delivered again while
    it runs: a ``time_limit`` or ``soft_time_limit`` at or above the broker's
    visibility timeout, a soft limit at or above the hard one (it would never fire),
    a retry delay at or above the timeout (a retry's message waits in a worker,
    unacknowledged, until its countdown ends). ``time_limit_s`` is the app's hard
    limit, used when the handler gives none. ``visibility_timeout_s`` is the
    broker's redelivery horizon (``Settings.handler_redelivery_s``: Redis's
    visibility timeout, RabbitMQ's consumer timeout), ``limit_name`` the setting it
    comes from, named in the message. Raises ``ValueError`` (one line)."""
    vt = visibility_timeout_s
    setting = limit_name or f"HANDLER_VISIBILITY_TIMEOUT_S={vt:g}"

    def refuse(option: str, value: Any, why: str) -> ValueError:
        return ValueError(f"{name}: {option}={value} {why}; lower it or raise {setting}")

    for option in ("time_limit", "soft_time_limit"):
        value = options.get(option)
        if value is not None and value >= vt:
            raise refuse(option, value, "is at or above the broker's redelivery horizon, "
                         "after which the broker delivers the task again while it still "
                         "runs")
    hard = options.get("time_limit", time_limit_s)
    soft = options.get("soft_time_limit")
    if soft is not None and hard is not None and soft >= hard:
        raise refuse("soft_time_limit", soft, f"is at or above the hard time_limit={hard} "
                     "and would never fire")
    retries = "autoretry_for" in options
    backoff = retries and bool(options.get("retry_backoff"))
    # An automatic retry waits default_retry_delay, or its backoff when there is one.
    implied = CELERY_DEFAULT_RETRY_DELAY if retries and not backoff else None
    delay = options.get("default_retry_delay", implied)
    if delay is not None and delay >= vt:
        default = "" if "default_retry_delay" in options else "(Celery's default) "
        raise refuse("default_retry_delay", delay, f"{default}is at or above "
                     "the broker's redelivery horizon: a retry waits out its countdown "
                     "unacknowledged in a worker, and the broker would deliver it again")
    if backoff:
        cap = options.get("retry_backoff_max", CELERY_DEFAULT_RETRY_BACKOFF_MAX)
        if cap >= vt:
            default = "" if "retry_backoff_max" in options else "(Celery's default) "
            raise refuse("retry_backoff_max", cap, f"{default}is at or above "
                         "the broker's redelivery horizon: a retry may wait out that long a "
                         "countdown unacknowledged in a worker, and the broker would "
                         "deliver it again")


#: The process-wide registry ``on_event`` fills.
REGISTRY = Registry()


def celery_task(handler: Handler, base: type, run: Callable[..., Any],
                options: dict[str, Any]) -> Any:
    """``run`` (bound, of task class ``base``) made the Celery task of ``handler``,
    named and documented like the user's function (Flower shows them)."""
    from agora_callbacks.workers.app import celery_app

    run.__name__ = handler.fn.__name__
    run.__qualname__ = handler.fn.__qualname__
    run.__module__ = handler.fn.__module__
    run.__doc__ = handler.fn.__doc__
    return celery_app.task(bind=True, base=base, name=handler.name,
                           agora_handler=handler, **options)(run)


def check_broker_limits(name: str, celery_options: dict[str, Any],
                        time_limit_s: int | None) -> None:
    """``check_time_options`` against the active broker's redelivery horizon
    (``Settings.handler_redelivery_s``: Redis's visibility timeout, or RabbitMQ's
    consumer timeout), for a handler or a lifecycle hook being registered."""
    from agora_callbacks.workers import runtime

    settings = runtime.get().settings
    check_time_options(name, celery_options, visibility_timeout_s=settings.handler_redelivery_s,
                       time_limit_s=time_limit_s,
                       limit_name=settings.handler_redelivery_setting)


def on_event(*selectors: Selector, **celery_options: Any) -> Callable[[F], F]:
    """Register the decorated function as a handler of the selected events."""
    if not selectors:
        raise TypeError("on_event needs at least one selector: a msgName, an eventType or '*'")

    def decorate(fn: F) -> F:
        handler: Handler | None = getattr(fn, "__agora_handler__", None)
        if handler is None:
            from agora_callbacks.workers.app import celery_app
            from agora_callbacks.workers.task import make_task

            name = str(celery_options.pop("name", f"{fn.__module__}.{fn.__qualname__}"))
            if "," in name or "\n" in name:
                raise ValueError(f"handler name {name!r} may not contain ',' or a newline")
            check_broker_limits(name, celery_options, celery_app.conf.task_time_limit)
            handler = Handler(name=name, fn=fn, kwargs=accepted_kwargs(fn))
            handler.task = make_task(handler, celery_options)
            fn.__agora_handler__ = handler  # type: ignore[attr-defined]
            fn.task = handler.task  # type: ignore[attr-defined]
        elif celery_options:
            raise TypeError(f"{handler.name}: give Celery options to one @on_event only")
        REGISTRY.add(handler, selectors)
        return fn

    return decorate
