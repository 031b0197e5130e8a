"""A handler's or hook's routing options (``queue=``, ``routing_key=``, ``priority=``...)
are applied by the app's ``task_routes`` router (``registry.route_task``), not set
as task attributes, which Celery 5.7 deprecates (``Task.bind`` warns; no effect
from 6.0): its task is still published to its queue, by a publish and by a retry,
and the worker's announce still records the queue for redrives. The app's
settings use none that Celery deprecates either."""

from __future__ import annotations

import json
import types
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.app.defaults import find_deprecated_settings
from celery.exceptions import CDeprecationWarning, CPendingDeprecationWarning, Retry

from agora_callbacks import keys, redrive, task_queues
from agora_callbacks.settings import Settings
from agora_callbacks.workers import bootstep
from agora_callbacks.workers.app import celery_app, celery_config
from agora_callbacks.workers.application import DEFAULT_QUEUE
from agora_callbacks.workers.hooks import HOOKS, on_recording
from agora_callbacks.workers.registry import (
    REGISTRY,
    TASK_ROUTES,
    Registry,
    on_event,
    route_task,
    routed_queue,
)

SELECTOR = 9_995
ARGS = ["s", "1", "k", False, None, {}, "{}"]


def deprecations(caught: list[warnings.WarningMessage]) -> list[str]:
    """Celery's deprecation warnings among ``caught``: deprecated, or to be (a
    setting deprecated for 6.0 is a pending one)."""
    return [str(w.message) for w in caught
            if issubclass(w.category, CDeprecationWarning | CPendingDeprecationWarning)]


#: What this test registered, removed after it (``unregister``): a handler's or
#: hook's route holds only while it is registered.
REGISTERED: list[tuple[Registry, str]] = []


@pytest.fixture(autouse=True)
def unregister() -> Iterator[None]:
    yield
    while REGISTERED:
        registry, name = REGISTERED.pop()
        registry.remove(name)


def register(name: str | None = None, **options: Any) -> Any:
    """The task of a no-op handler registered with ``options`` until the test ends."""
    name = name or f"test_task_routes.h_{uuid.uuid4().hex[:8]}"

    def handler(event: Any) -> None:  # pragma: no cover - registered, never run
        pass

    REGISTERED.append((REGISTRY, name))
    on_event(SELECTOR, name=name, **options)(handler)
    return handler.task  # type: ignore[attr-defined]


def register_hook(**options: Any) -> Any:
    """The task of a no-op ``finished`` hook registered with ``options`` until the
    test ends."""
    name = f"test_task_routes.hook_{uuid.uuid4().hex[:8]}"

    def hook(recording: dict[str, Any]) -> None:  # pragma: no cover - never run
        pass

    REGISTERED.append((HOOKS, name))
    on_recording("finished", name=name, **options)(hook)
    return hook.task  # type: ignore[attr-defined]


@pytest.fixture
def producer(settings: Settings, redis_client: redis.Redis) -> Iterator[Any]:
    """A producer on the test's Redis (the broker of ``settings``): the tasks are
    ``celery_app``'s, routed by its router, published through this connection."""
    app = redrive.producer_app(settings)
    try:
        with app.producer_or_acquire() as held:
            yield held
    finally:
        app.close()


def messages(client: redis.Redis, queue: str) -> list[dict[str, Any]]:
    """The task messages waiting in ``queue`` on the Redis broker (kombu's Redis
    transport keeps a list per queue, and one more per priority above 0, named
    after the queue)."""
    found = []
    for key in client.scan_iter(match=f"{queue}*", _type="list"):
        if key.decode() == queue or key.decode().startswith(f"{queue}\x06\x16"):
            found += [json.loads(m) for m in client.lrange(key, 0, -1)]
    return found


@pytest.mark.parametrize("option", [
    {"queue": "files"}, {"routing_key": "files"}, {"exchange": "files"},
    {"exchange_type": "direct"}, {"priority": 3}, {"delivery_mode": 2},
])
def test_routing_options_are_no_deprecated_task_attributes(option: dict[str, Any]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks = [register(**option), register_hook(**option)]
        for task in tasks:
            assert task.name  # the task's class is made and bound by its first use
    assert deprecations(caught) == []
    # Not the task class's attribute (Celery's bind may set one to the app's
    # default, e.g. priority to task_default_priority, None; never the option).
    ((attribute, value),) = option.items()
    assert all(getattr(type(task), attribute, None) != value for task in tasks)


def test_a_handler_task_is_published_to_its_queue(producer: Any,
                                                   redis_client: redis.Redis) -> None:
    task = register(queue="files")
    task.apply_async(args=ARGS, producer=producer)
    (sent,) = messages(redis_client, "files")
    assert sent["headers"]["task"] == task.name
    assert messages(redis_client, DEFAULT_QUEUE) == []
    assert routed_queue(task.name) == "files"


def test_a_hook_task_is_published_to_its_queue_with_its_priority(
        producer: Any, redis_client: redis.Redis) -> None:
    task = register_hook(queue="hooks", priority=3)
    task.apply_async(args=["s", "finished", {}, {}], producer=producer)
    (sent,) = messages(redis_client, "hooks")
    assert sent["headers"]["task"] == task.name
    assert sent["properties"]["priority"] == 3
    assert messages(redis_client, DEFAULT_QUEUE) == []


def test_a_queue_given_to_the_publish_wins(producer: Any, redis_client: redis.Redis) -> None:
    task = register(queue="files")
    task.apply_async(args=ARGS, producer=producer, queue="other")
    assert len(messages(redis_client, "other")) == 1
    assert messages(redis_client, "files") == []


def test_a_task_without_routing_options_goes_to_the_default_queue(
        producer: Any, redis_client: redis.Redis) -> None:
    task = register(max_retries=2)
    assert task.name not in TASK_ROUTES
    task.apply_async(args=ARGS, producer=producer)
    assert len(messages(redis_client, DEFAULT_QUEUE)) == 1
    assert routed_queue(task.name) is None


def test_a_retry_is_published_to_the_handler_s_queue(producer: Any,
                                                      redis_client: redis.Redis) -> None:
    task = register(queue="files")
    # No delivery_info: the queue can only come from the handler's route, not from
    # the delivery being retried.
    task.push_request(id="t-1", args=ARGS, kwargs={}, retries=0, called_directly=False,
                      delivery_info={})
    try:
        retry = task.retry(countdown=1, throw=False, producer=producer)
    finally:
        task.pop_request()
    assert isinstance(retry, Retry)
    (sent,) = messages(redis_client, "files")
    assert sent["headers"]["id"] == "t-1" and sent["headers"]["retries"] == 1
    assert messages(redis_client, DEFAULT_QUEUE) == []


def test_the_announce_records_each_task_s_queue(redis_client: redis.Redis) -> None:
    handler = register(queue="files")
    plain = register()
    hook = register_hook(queue="hooks")
    bootstep._announce_task_queues(redis_client)
    assert task_queues.announced_queue(redis_client, handler.name) == "files"
    assert task_queues.announced_queue(redis_client, hook.name) == "hooks"
    assert task_queues.announced_queue(redis_client, plain.name) is None
    assert redis_client.hget(keys.TASK_QUEUES, plain.name) == b""


def test_a_removed_handler_or_hook_keeps_no_route() -> None:
    handler = register(queue="files")
    hook = register_hook(queue="hooks", priority=3)
    assert routed_queue(handler.name) == "files" and routed_queue(hook.name) == "hooks"
    REGISTRY.remove(handler.name)
    HOOKS.remove(hook.name)
    for task in (handler, hook):
        assert task.name not in TASK_ROUTES
        assert route_task(task.name, [], {}, {}) is None and routed_queue(task.name) is None
    # Added back (as the simulation sets the registered handlers aside and back):
    # routed again.
    REGISTRY.add(handler.agora_handler, [SELECTOR])
    HOOKS.add(hook.agora_handler, ["finished"])
    assert routed_queue(handler.name) == "files"
    assert route_task(hook.name, [], {}, {}) == {"queue": "hooks", "priority": 3}


def test_a_handler_refused_for_its_name_leaves_the_registered_one_s_route() -> None:
    first = register(queue="files")
    with pytest.raises(ValueError, match="already registered"):
        register(first.name, queue="other")
    assert routed_queue(first.name) == "files"


def test_the_app_uses_no_deprecated_celery_setting(settings: Settings) -> None:
    for config in (celery_config(settings), dict(celery_app.conf.changes)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # What Celery checks a configuration object with (Celery.prepare_config).
            find_deprecated_settings(types.SimpleNamespace(**config))
        assert deprecations(caught) == []
