"""Handler tasks stay below the broker's visibility timeout (finding 8).

The Redis transport delivers an unacknowledged message again once it has been
out for ``HANDLER_VISIBILITY_TIMEOUT_S``: a handler still running then would run a
second time beside itself. Every handler task therefore has a hard time limit (and
a soft one before it) below that timeout, and a handler whose own options would
reach it is refused when it is registered.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from registry_support import register_throwaway

from agora_callbacks.settings import Settings
from agora_callbacks.workers import REGISTRY, on_event
from agora_callbacks.workers.app import celery_app, celery_config
from agora_callbacks.workers.registry import check_time_options

VT = int(celery_app.conf.broker_transport_options["visibility_timeout"])
#: An eventType no Cloud Recording event has: these handlers never see another test's events.
SELECTOR = 9_999


def register(**options: Any) -> Any:
    return register_throwaway(SELECTOR, "test_registry_limits", **options)


def test_celery_config_sets_time_limits_below_the_visibility_timeout() -> None:
    for env in ({}, {"HANDLER_VISIBILITY_TIMEOUT_S": "8", "REDIS_RETRY_S": "2"},
                {"HANDLER_VISIBILITY_TIMEOUT_S": "3000", "HANDLER_DEADLINE_S": "7200"}):
        settings = Settings.from_env(env)
        conf = celery_config(settings)
        vt = conf["broker_transport_options"]["visibility_timeout"]
        assert vt == settings.handler_visibility_timeout_s
        assert 0 < conf["task_soft_time_limit"] < conf["task_time_limit"] < vt
        assert conf["task_time_limit"] == settings.handler_time_limit_s
        assert conf["task_soft_time_limit"] == settings.handler_soft_time_limit_s


def test_the_app_applies_them() -> None:
    assert celery_app.conf.task_time_limit is not None
    assert 0 < celery_app.conf.task_soft_time_limit < celery_app.conf.task_time_limit < VT


@pytest.mark.parametrize(("option", "value"), [
    ("time_limit", VT),
    ("time_limit", VT + 100),
    ("soft_time_limit", VT),
    ("default_retry_delay", VT),
    ("default_retry_delay", VT * 2.5),
])
def test_an_option_at_or_above_the_visibility_timeout_is_refused(option: str,
                                                                   value: float) -> None:
    with pytest.raises(ValueError) as err:
        register(**{option: value})
    message = str(err.value)
    assert "\n" not in message
    assert f"{option}={value}" in message, message
    assert f"HANDLER_VISIBILITY_TIMEOUT_S={VT}" in message, message


def test_a_refused_handler_is_not_registered() -> None:
    name = f"test_registry_limits.refused_{uuid.uuid4().hex[:8]}"

    def handler(event: Any) -> None:  # pragma: no cover
        pass

    with pytest.raises(ValueError):
        on_event(SELECTOR, name=name, time_limit=VT)(handler)
    assert REGISTRY.get(name) is None
    assert name not in celery_app.tasks
    assert not hasattr(handler, "task")


def test_a_retry_backoff_that_can_reach_the_visibility_timeout_is_refused() -> None:
    # Celery's retry_backoff_max is 600 s unless given.
    if VT <= 600:
        with pytest.raises(ValueError, match="retry_backoff_max=600"):
            register(autoretry_for=(OSError,), retry_backoff=True)
    with pytest.raises(ValueError, match=f"retry_backoff_max={VT}"):
        register(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=VT)
    # Below the timeout but past the soft limit: a retry waiting that long would
    # have no time left to run before the broker delivers it again.
    soft = celery_app.conf.task_soft_time_limit
    with pytest.raises(ValueError, match=f"retry_backoff_max={VT - 1} leaves a retried run"):
        register(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=VT - 1)
    register(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=soft - 1)


def test_celerys_default_retry_delay_counts_for_a_handler_that_retries() -> None:
    # 180 s unless given: refused only when it reaches the visibility timeout.
    if VT <= 180:
        with pytest.raises(ValueError, match="default_retry_delay=180"):
            register(autoretry_for=(OSError,))
    else:
        register(autoretry_for=(OSError,))


def test_a_soft_limit_at_or_above_the_hard_limit_is_refused() -> None:
    hard = celery_app.conf.task_time_limit
    with pytest.raises(ValueError, match=f"soft_time_limit={hard}.*time_limit"):
        register(soft_time_limit=hard)
    with pytest.raises(ValueError, match=r"soft_time_limit=10.*time_limit=10"):
        register(time_limit=10, soft_time_limit=10)


def test_limits_below_the_visibility_timeout_are_kept() -> None:
    # A retry's wait comes off its run's limits (tests/test_retry_limits.py): VT - 3
    # leaves the retried run 2 s (hard) and 1 s (soft); VT - 1 would leave none.
    handler = register(time_limit=VT - 1, soft_time_limit=VT - 2, default_retry_delay=VT - 3)
    with pytest.raises(ValueError, match=f"default_retry_delay={VT - 1} leaves a retried run"):
        register(time_limit=VT - 1, soft_time_limit=VT - 2, default_retry_delay=VT - 1)
    assert handler.task.time_limit == VT - 1
    assert handler.task.soft_time_limit == VT - 2
    plain = register()  # the app's limits
    assert plain.task.time_limit == celery_app.conf.task_time_limit
    assert plain.task.soft_time_limit == celery_app.conf.task_soft_time_limit


def test_the_checks_with_a_short_visibility_timeout() -> None:
    def check(**options: Any) -> None:
        check_time_options("h", options, visibility_timeout_s=10, time_limit_s=7)

    check(autoretry_for=(OSError,), default_retry_delay=1)
    # With a backoff, an automatic retry waits the backoff, not default_retry_delay.
    check(autoretry_for=(OSError,), retry_backoff=1, retry_backoff_max=5)
    with pytest.raises(ValueError, match=r"^h: default_retry_delay=180 \(Celery's default\)"):
        check(autoretry_for=(OSError,))
    with pytest.raises(ValueError, match=r"^h: retry_backoff_max=30 .*TIMEOUT_S=10$"):
        check(autoretry_for=(OSError,), retry_backoff=1, retry_backoff_max=30)
    with pytest.raises(ValueError, match=r"^h: soft_time_limit=7 .*time_limit=7"):
        check(soft_time_limit=7)
    with pytest.raises(ValueError, match=r"^h: default_retry_delay=10 "):
        check(default_retry_delay=10)  # a handler may call retry() itself
