"""Handler registration: ``@on_event`` turns a function into a Celery task.

    from agora_callbacks.workers import on_event

    @on_event("uploaded")           # by msgName
    @on_event(31, queue="files")    # by eventType; Celery options pass through
    def store_files(event, key, late, gap): ...

Each handler is one Celery task named ``<module>.<qualname>`` (or ``name=``), with
the base class ``workers.task.HandlerTask``. Selectors: a ``msgName`` (str), an
``eventType`` (int) or ``"*"`` for every event; several may be given in one call
or in stacked calls, but Celery options only in one of them. Routing options
(``queue``, ``routing_key``, ``exchange``, ``exchange_type``, ``priority``,
``delivery_mode``) are not set on the task class (Celery 5.7 deprecates them as
task attributes) but applied by the app's ``task_routes`` router
(``route_task``) to every message of the task: its publish, its retries. The function gets
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
reach the horizon is refused at registration (``check_time_options``), and so is
one with ``acks_late=False``, ``reject_on_worker_lost=False`` or a ``rate_limit``
(``check_ack_options``).

A retry's wait counts too: the broker times a message from its delivery, and a
worker takes a retry (a countdown or ETA task) at once and holds it,
unacknowledged, until its countdown ends. So a retried run's time limits are its
task's less the wait (``retry_time_limits``, applied by ``BoundedRetryTask.retry``
to every retry, ``autoretry_for`` or explicit), and a retry delay that would leave
no time to run is refused: at registration when it is an option, at the retry
otherwise (the task then fails with that error).
"""

from __future__ import annotations

import inspect
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from celery import Task

Selector = str | int
P = ParamSpec("P")
R = TypeVar("R", covariant=True)
T = TypeVar("T")


class Registered(Protocol[P, R]):
    """What ``@on_event`` and ``@on_recording`` return: the function itself, unchanged
    (callable with its own signature, in your tests), with its Celery task as
    ``.task``."""

    task: Any

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...


#: Keyword arguments a handler may declare, besides the event.
OPTIONAL_KWARGS = ("key", "late", "gap")
EVERY = "*"


@dataclass
class Handler:
    """One registered handler: its task name, function, selectors and task, and the
    routing options of its task (``celery_task``; in ``TASK_ROUTES`` while it is in a
    registry)."""

    name: str
    fn: Callable[..., Any]
    kwargs: frozenset[str]
    selectors: set[Selector] = field(default_factory=set)
    task: Any = None
    route: dict[str, Any] = field(default_factory=dict)

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


def check_callable(name: str, fn: Callable[..., Any], kwargs: frozenset[str], first: str,
                   optional: Iterable[str]) -> None:
    """Raise ``TypeError`` (one line) unless ``fn`` can be called as the workers call
    it: ``fn(<first>, **{k: ... for k in kwargs})``. A parameter they never pass (a
    typo of an optional one, a missing first argument) would fail every call, each
    one dead-lettered at run time."""
    try:
        inspect.signature(fn).bind(None, **dict.fromkeys(kwargs))
    except TypeError as exc:
        raise TypeError(f"{name}: cannot be called as the workers call it, with the "
                        f"{first} and those of {', '.join(optional)} it names: {exc}"
                        ) from None


class Registry:
    """Handlers by name, and which of them match an event. Adding a handler puts its
    task's route in ``TASK_ROUTES``; removing it takes the route out again."""

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
            if handler.route:
                TASK_ROUTES[handler.name] = handler.route
            self._cache.clear()

    def remove(self, name: str) -> None:
        with self._lock:
            removed = self.handlers.pop(name, None)
            if removed is not None and TASK_ROUTES.get(name) is removed.route:
                del TASK_ROUTES[name]
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


def retry_time_limits(delay_s: float, *, hard: float | None, soft: float | None,
                      app_hard: int, app_soft: int) -> tuple[int, int] | None:
    """The (hard, soft) time limits of a run that starts ``delay_s`` after its
    message was delivered (a retry waiting out its countdown in the worker): each
    limit (the task's own, or the app's when it has none) less the wait, as the
    broker's redelivery clock runs from the delivery; never above the task's own.
    ``None`` when no second of run is left."""
    wait = math.ceil(max(0.0, delay_s))
    hard_s, soft_s = hard or app_hard, soft or app_soft
    new_hard = int(min(hard_s, max(hard_s, app_hard) - wait))
    new_soft = int(min(soft_s, max(soft_s, app_soft) - wait))
    return None if min(new_hard, new_soft) < 1 else (new_hard, new_soft)


def check_time_options(name: str, options: dict[str, Any], *, visibility_timeout_s: float,
                       time_limit_s: float | None,
                       limit_name: str | None = None,
                       soft_time_limit_s: float | None = None) -> None:
    """Refuse Celery options that would let a handler task be delivered again while
    it runs: a ``time_limit`` or ``soft_time_limit`` at or above the broker's
    visibility timeout, a soft limit at or above the hard one (it would never fire),
    a retry delay at or above the timeout (a retry's message waits in a worker,
    unacknowledged, until its countdown ends). ``time_limit_s`` is the app's hard
    limit, used when the handler gives none. ``visibility_timeout_s`` is the
    broker's redelivery horizon (``Settings.handler_redelivery_s``: Redis's
    visibility timeout, RabbitMQ's consumer timeout), ``limit_name`` the setting it
    comes from, named in the message. With the app's soft limit
    (``soft_time_limit_s``) a retry delay that leaves a retried run no time
    (``retry_time_limits``) is refused as well. Raises ``ValueError`` (one line)."""
    vt = visibility_timeout_s
    setting = limit_name or f"HANDLER_VISIBILITY_TIMEOUT_S={vt:g}"

    def refuse(option: str, value: Any, why: str) -> ValueError:
        return ValueError(f"{name}: {option}={value} {why}; lower it or raise {setting}")

    for option in ("time_limit", "soft_time_limit"):
        value = options.get(option)
        if value is not None and not value > 0:
            # billiard's pool takes 0 for "no limit" (only None falls back to the
            # app's): the handler could run on past the horizon.
            raise refuse(option, value, "is not a positive number of seconds (0 turns "
                         "the limit off)")
        if value is not None and value >= vt:
            raise refuse(option, value, "is at or above the broker's redelivery horizon, "
                         "after which the broker delivers the task again while it still "
                         "runs")
    # time_limit=None: Celery applies the app's.
    hard = time_limit_s if options.get("time_limit") is None else options["time_limit"]
    soft = options.get("soft_time_limit")
    if soft is not None and hard is not None and soft >= hard:
        raise refuse("soft_time_limit", soft, f"is at or above the hard time_limit={hard} "
                     "and would never fire")
    retries = "autoretry_for" in options
    backoff = retries and bool(options.get("retry_backoff"))
    # An automatic retry waits default_retry_delay, or its backoff when there is one.
    implied = CELERY_DEFAULT_RETRY_DELAY if retries and not backoff else None
    delay = options.get("default_retry_delay", implied)
    # With backoff, the longest wait is its cap.
    cap = options.get("retry_backoff_max", CELERY_DEFAULT_RETRY_BACKOFF_MAX) if backoff else None
    if delay is not None and delay >= vt:
        default = "" if "default_retry_delay" in options else "(Celery's default) "
        raise refuse("default_retry_delay", delay, f"{default}is at or above "
                     "the broker's redelivery horizon: a retry waits out its countdown "
                     "unacknowledged in a worker, and the broker would deliver it again")
    if cap is not None and cap >= vt:
        default = "" if "retry_backoff_max" in options else "(Celery's default) "
        raise refuse("retry_backoff_max", cap, f"{default}is at or above "
                     "the broker's redelivery horizon: a retry may wait out that long a "
                     "countdown unacknowledged in a worker, and the broker would "
                     "deliver it again")
    if soft_time_limit_s is not None and time_limit_s is not None:
        check_retry_fits(options, refuse, delay=delay, cap=cap,
                         app_hard=int(time_limit_s), app_soft=int(soft_time_limit_s))


#: Celery options a handler or hook may not give, each with why: they would
#: acknowledge its message before its run ended, or hold it unacknowledged for an
#: unbounded time.
REFUSED_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "acks_late": (lambda value: not value, "would acknowledge the task before it runs, "
                  "so a worker killed mid-handler would lose it and the recording "
                  "would wait HANDLER_DEADLINE_S"),
    "reject_on_worker_lost": (lambda value: not value, "would acknowledge the task of a "
                              "pool process that died mid-handler, losing it"),
    "rate_limit": (lambda value: value is not None, "holds a message unacknowledged in "
                   "the worker until its token comes, a wait no time limit bounds, past "
                   "the broker's redelivery horizon; limit the rate inside the handler"),
}


def check_ack_options(name: str, options: dict[str, Any]) -> None:
    """Refuse ``REFUSED_OPTIONS`` (``acks_late=False``, ``reject_on_worker_lost=False``,
    a ``rate_limit``): ``ValueError``, one line naming the option."""
    for option, (refused, why) in REFUSED_OPTIONS.items():
        if option in options and refused(options[option]):
            raise ValueError(f"{name}: {option}={options[option]} {why}; leave it out")


def check_retry_fits(options: dict[str, Any], refuse: Callable[[str, Any, str], ValueError],
                     *, delay: float | None, cap: float | None, app_hard: int,
                     app_soft: int) -> None:
    """Refuse a retry delay option after which a retried run would have no time left
    below the horizon (``retry_time_limits``): ``default_retry_delay``, the backoff
    cap, or a ``countdown`` in ``retry_kwargs`` (what ``autoretry_for`` retries with)."""
    countdown = (options.get("retry_kwargs") or {}).get("countdown")
    for option, value, wait in (("default_retry_delay", delay, delay),
                                ("retry_backoff_max", cap, cap),
                                ("retry_kwargs", options.get("retry_kwargs"), countdown)):
        if wait is not None and retry_time_limits(
                wait, hard=options.get("time_limit"), soft=options.get("soft_time_limit"),
                app_hard=app_hard, app_soft=app_soft) is None:
            raise refuse(option, value, f"leaves a retried run no time: the broker times a "
                         f"retry from its delivery, so its wait ({wait} s) comes off the "
                         f"time limits (soft {options.get('soft_time_limit') or app_soft} s)")


#: The process-wide registry ``on_event`` fills.
REGISTRY = Registry()

#: The Celery options that say where a task's messages go. Celery 5.7 deprecates
#: them as task attributes (``Task.bind`` warns; no effect from 6.0), so a handler's
#: or hook's are not set on its task class: they are kept in ``TASK_ROUTES`` and
#: applied by ``route_task``, the app's ``task_routes`` router.
ROUTING_OPTIONS = ("queue", "exchange", "exchange_type", "routing_key", "priority",
                   "delivery_mode")

#: The routing options of each handler and hook task registered in this process,
#: by task name (``Handler.route``, set by ``celery_task``; put here by
#: ``Registry.add``, taken out by ``Registry.remove``); none for a task without any.
TASK_ROUTES: dict[str, dict[str, Any]] = {}


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None,
               **kw: Any) -> dict[str, Any] | None:
    """The app's ``task_routes`` router (``workers.app.celery_config``): the routing
    options a handler or hook was registered with (``queue=``...), while it is
    registered, for every message of its task published in this process: by the
    workers, by its retries, by ``fn.task.delay``. Options given to the publish
    itself win (Celery merges them over the route), as the redrive's ``queue=`` from
    the announced queues (``agora_callbacks.task_queues``), in processes that do not
    import handlers. ``None`` (Celery's default queue) for any other task."""
    route = TASK_ROUTES.get(name)
    return dict(route) if route else None  # Celery pops "queue" from what it gets


def routed_queue(name: str) -> str | None:
    """The queue task ``name`` is routed to in this process: its handler's or hook's
    ``queue=`` (``TASK_ROUTES``); None: the default. What a worker announced for
    processes that register no handlers is ``task_queues.announced_queue``."""
    queue = TASK_ROUTES.get(name, {}).get("queue")
    return None if queue is None else str(getattr(queue, "name", queue))


#: The handler or hook behind each task name made in this process (``celery_task``).
#: Celery keeps the first task of a name and only warns about a second: a second
#: handler or hook under a name would never run, its calls reaching the first.
TASK_OWNERS: dict[str, Handler] = {}


def claim_task_name(handler: Handler) -> None:
    """Refuse ``handler.name`` when another handler or lifecycle hook has it already
    (``ValueError``, one line naming both functions): also the same function made
    both a handler and a hook under one name."""
    owner = TASK_OWNERS.setdefault(handler.name, handler)
    if owner is not handler:
        fn = handler.fn
        raise ValueError(f"a task named {handler.name!r} is already registered for "
                         f"{owner.fn.__module__}.{owner.fn.__qualname__} (a handler or a "
                         f"lifecycle hook): Celery would run that one under this name; give "
                         f"{fn.__module__}.{fn.__qualname__} another name=")


def celery_task(handler: Handler, base: type, run: Callable[..., Any],
                options: dict[str, Any]) -> Any:
    """``run`` (bound, of task class ``base``) made the Celery task of ``handler``,
    named and documented like the user's function (Flower shows them), under a name
    no other function's handler or hook has (``claim_task_name``). Its
    ``ROUTING_OPTIONS`` go to ``handler.route`` (in ``TASK_ROUTES`` once the handler
    is added to a registry), the others to the task class."""
    from agora_callbacks.workers.application import celery_app

    claim_task_name(handler)
    options = dict(options)
    route = {k: options.pop(k) for k in ROUTING_OPTIONS if k in options}
    handler.route = {k: v for k, v in route.items() if v is not None}
    run.__name__ = handler.fn.__name__
    run.__qualname__ = handler.fn.__qualname__
    run.__module__ = handler.fn.__module__
    run.__doc__ = handler.fn.__doc__
    return celery_app.task(bind=True, base=base, name=handler.name, shared=False,
                           agora_handler=handler, **options)(run)


def retry_delay_s(countdown: float | None, eta: datetime | None, default: float) -> float:
    """How long a retry waits before it runs, as Celery's ``Task.retry`` reads its
    arguments: ``countdown``, else ``eta`` (naive: UTC), else ``default``."""
    if countdown is not None:
        return float(countdown)
    if eta is not None:
        aware = eta if eta.tzinfo is not None else eta.replace(tzinfo=UTC)
        return aware.timestamp() - time.time()
    return float(default)


class BoundedRetryTask(Task):
    """A task whose retries stay below the broker's redelivery horizon: the retried
    run's time limits are shortened by its wait (``retry_time_limits``), and a
    retry that would leave no time to run raises ``ValueError`` (one line) instead
    of being published."""

    def retry(self, args: Any = None, kwargs: Any = None, exc: Any = None,
              throw: bool = True, eta: datetime | None = None,
              countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Any:
        from agora_callbacks.workers import runtime

        settings = runtime.get().settings
        delay = retry_delay_s(countdown, eta, self.default_retry_delay)
        limits = retry_time_limits(
            delay, hard=options.get("time_limit") or self.time_limit,
            soft=options.get("soft_time_limit") or self.soft_time_limit,
            app_hard=settings.handler_time_limit_s, app_soft=settings.handler_soft_time_limit_s)
        if limits is None:
            raise ValueError(f"{self.name}: a retry in {delay:.0f} s leaves no time to run "
                             f"before the broker would deliver it again (its wait counts "
                             f"against the time limits); retry sooner or raise "
                             f"{settings.handler_redelivery_setting}")
        options["time_limit"], options["soft_time_limit"] = limits
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)


def check_broker_limits(name: str, celery_options: dict[str, Any],
                        time_limit_s: int | None) -> None:
    """``check_time_options`` against the active broker's redelivery horizon
    (``Settings.handler_redelivery_s``: Redis's visibility timeout, or RabbitMQ's
    consumer timeout), and ``check_ack_options``, for a handler or a lifecycle hook
    being registered."""
    from agora_callbacks.workers import runtime

    # The settings only: registering builds no runtime (no Redis client).
    settings = runtime.get_settings()
    check_ack_options(name, celery_options)
    check_time_options(name, celery_options, visibility_timeout_s=settings.handler_redelivery_s,
                       time_limit_s=time_limit_s,
                       limit_name=settings.handler_redelivery_setting,
                       soft_time_limit_s=settings.handler_soft_time_limit_s)


def on_event(*selectors: Selector,
             **celery_options: Any) -> Callable[[Callable[P, T]], Registered[P, T]]:
    """Register the decorated function as a handler of the selected events."""
    if not selectors:
        raise TypeError("on_event needs at least one selector: a msgName, an eventType or '*'")

    def decorate(fn: Callable[P, T]) -> Registered[P, T]:
        handler: Handler | None = getattr(fn, "__agora_handler__", None)
        if handler is None:
            from agora_callbacks.workers.application import celery_app
            from agora_callbacks.workers.task import make_task

            name = str(celery_options.pop("name", f"{fn.__module__}.{fn.__qualname__}"))
            if "," in name or "\n" in name:
                raise ValueError(f"handler name {name!r} may not contain ',' or a newline")
            check_broker_limits(name, celery_options, celery_app.conf.task_time_limit)
            kwargs = accepted_kwargs(fn)
            check_callable(name, fn, kwargs, "event", OPTIONAL_KWARGS)
            handler = Handler(name=name, fn=fn, kwargs=kwargs)
            handler.task = make_task(handler, celery_options)
            fn.__agora_handler__ = handler  # type: ignore[attr-defined]
            fn.task = handler.task  # type: ignore[attr-defined]
        elif celery_options:
            raise TypeError(f"{handler.name}: give Celery options to one @on_event only")
        REGISTRY.add(handler, selectors)
        return cast("Registered[P, T]", fn)

    return decorate
