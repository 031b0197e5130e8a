"""Handler options that would undo what the time limits protect are refused at
registration, one line naming the option.

- ``acks_late=False`` (or ``reject_on_worker_lost=False``): the message would be
  acknowledged before the run (or when its process dies), so a worker killed
  mid-handler would lose the handler's task: the recording waits
  ``HANDLER_DEADLINE_S`` for it. ``HandlerTask`` sets both, but a Celery option
  given to ``@on_event`` overrides the base class.
- ``rate_limit``: Celery holds a rate-limited message, unacknowledged, in the
  worker until the worker's token bucket lets it run, a wait no time limit
  bounds: past the visibility timeout (Redis delivers it again, the copy runs
  beside it) or RabbitMQ's ``consumer_timeout`` (the channel is closed, the worker
  stops).
- ``time_limit=0`` (or NaN): billiard's pool takes 0 for "no limit" (only
  ``None`` falls back to the app's), so the handler could run past the horizon.
- ``time_limit=None`` with a ``soft_time_limit``: Celery then applies the app's
  hard limit, and a soft limit at or above it never fires.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from registry_support import register_throwaway

from agora_callbacks.workers import REGISTRY, on_event
from agora_callbacks.workers.app import celery_app
from agora_callbacks.workers.hooks import HOOKS, on_recording

SELECTOR = 9_997
HARD = int(celery_app.conf.task_time_limit)


def register(**options: Any) -> Any:
    return register_throwaway(SELECTOR, "test_registry_options", **options).task


@pytest.mark.parametrize(("option", "value"), [
    ("acks_late", False), ("reject_on_worker_lost", False), ("acks_late", None),
    ("rate_limit", "10/m"), ("rate_limit", 5),
])
def test_an_option_that_undoes_redelivery_safety_is_refused(option: str, value: Any) -> None:
    with pytest.raises(ValueError) as err:
        register(**{option: value})
    message = str(err.value)
    assert "\n" not in message and f"{option}={value}" in message, message
    assert message.startswith("test_registry_options.h_")


def test_the_same_for_a_lifecycle_hook() -> None:
    name = f"test_registry_options.hook_{uuid.uuid4().hex[:8]}"

    def hook(recording: dict[str, Any]) -> None:  # pragma: no cover
        pass

    with pytest.raises(ValueError, match="acks_late=False"):
        on_recording("finished", name=name, acks_late=False)(hook)
    assert HOOKS.get(name) is None


def test_the_safe_values_are_kept() -> None:
    task = register(acks_late=True, reject_on_worker_lost=True, rate_limit=None)
    assert task.acks_late and task.reject_on_worker_lost and task.rate_limit is None


def test_a_soft_limit_above_the_app_s_hard_one_is_refused_without_a_hard_one() -> None:
    with pytest.raises(ValueError, match=f"soft_time_limit={HARD + 1} .*time_limit={HARD}"):
        register(time_limit=None, soft_time_limit=HARD + 1)
    register(time_limit=None, soft_time_limit=HARD - 1)


@pytest.mark.parametrize("option", ["time_limit", "soft_time_limit"])
@pytest.mark.parametrize("value", [0, -1, float("nan")])
def test_a_limit_that_is_not_a_positive_number_is_refused(option: str, value: float) -> None:
    with pytest.raises(ValueError) as err:
        register(**{option: value})
    message = str(err.value)
    assert "\n" not in message and f"{option}={value}" in message, message
    assert "positive" in message, message


def readme_handler_examples() -> list[str]:
    """The README's Python examples that register a handler or a hook."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    return [b for b in blocks if "@on_event(" in b or "@on_recording(" in b]


@pytest.mark.parametrize("block", readme_handler_examples())
def test_the_readme_s_examples_register_with_the_default_settings(block: str) -> None:
    """What the README shows must not be refused on the default Redis broker (a
    ``retry_backoff`` without ``retry_backoff_max`` is: Celery's 600 s cap reaches
    the 600 s visibility timeout)."""
    module = f"readme_example_{uuid.uuid4().hex[:8]}"
    try:
        exec(compile(block, "README.md", "exec"), {"__name__": module})
    finally:
        for registry in (REGISTRY, HOOKS):
            for name in [n for n in registry.handlers if n.startswith(module)]:
                registry.remove(name)


def _no_key(event: Any, bogus: Any) -> None:  # pragma: no cover - never registered
    pass


def _nothing() -> None:  # pragma: no cover - never registered
    pass


def _kw_only(event: Any, *, key: str, region: str) -> None:  # pragma: no cover
    pass


@pytest.mark.parametrize(("fn", "why"), [
    (_no_key, "'bogus'"), (_nothing, "too many positional arguments"),
    (_kw_only, "'region'"),
])
def test_a_handler_that_cannot_be_called_with_an_event_is_refused(fn: Any, why: str) -> None:
    """A parameter the workers never pass (a typo of ``key``, a missing ``event``)
    would fail every call, each event dead-lettered at run time: refused at
    registration instead, one line naming the handler and the argument."""
    name = f"test_registry_options.sig_{uuid.uuid4().hex[:8]}"
    with pytest.raises(TypeError) as err:
        on_event(SELECTOR, name=name)(fn)
    message = str(err.value)
    assert "\n" not in message and message.startswith(name) and why in message, message
    assert "key, late, gap" in message, message
    assert name not in REGISTRY.handlers


def test_a_hook_that_cannot_be_called_with_a_record_is_refused() -> None:
    name = f"test_registry_options.hooksig_{uuid.uuid4().hex[:8]}"

    def hook(recording: dict[str, Any], reason: str) -> None:  # pragma: no cover
        pass

    with pytest.raises(TypeError) as err:
        on_recording("failed", name=name)(hook)
    message = str(err.value)
    assert "\n" not in message and message.startswith(name) and "'reason'" in message
    assert "phase, info" in message, message
    assert HOOKS.get(name) is None


def test_handlers_with_defaults_or_kwargs_still_register() -> None:
    def with_default(event: Any, extra: int = 1, *, key: str = "") -> None:  # pragma: no cover
        pass

    def with_kwargs(event: Any, **kwargs: Any) -> None:  # pragma: no cover
        pass

    for fn in (with_default, with_kwargs):
        name = f"test_registry_options.ok_{uuid.uuid4().hex[:8]}"
        try:
            on_event(SELECTOR, name=name)(fn)
        finally:
            REGISTRY.remove(name)
