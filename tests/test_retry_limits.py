"""A retry's wait counts against the broker's redelivery horizon too.

Both brokers time an unacknowledged message from its delivery: kombu's Redis
transport scores it in its unacked index when a worker takes it, RabbitMQ's
``consumer_timeout`` runs from the delivery. A retry (a countdown or ETA task) is
taken by a worker at once and held, unacknowledged, until its countdown ends;
then it runs. So a retry that waits 180 s (Celery's default) and then runs up to
the app's hard limit (540 s) is out for 720 s, past the 600 s visibility timeout:
the broker delivers it again while it still runs, and the copy (same task id)
passes the start fence. The retried run's time limits are therefore shortened by
its wait, and a retry that leaves no time to run is refused.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import pytest
from celery.exceptions import Retry

from agora_callbacks.workers import REGISTRY, on_event
from agora_callbacks.workers.app import celery_app
from agora_callbacks.workers.registry import check_time_options, retry_time_limits

VT = int(celery_app.conf.broker_transport_options["visibility_timeout"])
HARD = int(celery_app.conf.task_time_limit)
SOFT = int(celery_app.conf.task_soft_time_limit)
SELECTOR = 9_998


def register(**options: Any) -> Any:
    name = f"test_retry_limits.h_{uuid.uuid4().hex[:8]}"

    def handler(event: Any) -> None:  # pragma: no cover - registered, never run
        pass

    on_event(SELECTOR, name=name, **options)(handler)
    REGISTRY.remove(name)
    return handler.task


def retried_options(task: Any, **retry: Any) -> dict[str, Any]:
    """The apply_async options of the message ``task.retry(**retry)`` publishes."""
    task.push_request(id="t-1", args=["s", "m", "k", False, None, {}, "{}"], kwargs={},
                      retries=0, called_directly=False, delivery_info={})
    try:
        with mock.patch.object(task, "apply_async") as publish, pytest.raises(Retry):
            task.retry(**retry)
    finally:
        task.pop_request()
    return dict(publish.call_args.kwargs)


def test_a_retry_runs_within_what_its_wait_leaves_of_the_horizon() -> None:
    task = register(autoretry_for=(OSError,))
    sent = retried_options(task, countdown=180)
    assert sent["countdown"] == 180
    assert sent["time_limit"] == HARD - 180
    assert sent["soft_time_limit"] == SOFT - 180
    assert 180 + sent["time_limit"] < VT


def test_celerys_default_delay_and_an_eta_count_as_the_wait() -> None:
    task = register(autoretry_for=(OSError,))
    assert retried_options(task)["time_limit"] == HARD - 180  # default_retry_delay
    eta = datetime.now(UTC) + timedelta(seconds=100)
    assert retried_options(task, eta=eta)["time_limit"] <= HARD - 99


def test_a_handler_s_own_lower_limits_are_kept_when_they_fit() -> None:
    task = register(time_limit=60, soft_time_limit=50)
    sent = retried_options(task, countdown=10)
    assert (sent["time_limit"], sent["soft_time_limit"]) == (60, 50)


@pytest.mark.parametrize("retry", [{"countdown": VT * 3}, {"countdown": SOFT},
                                   {"eta": datetime.now(UTC) + timedelta(hours=5)}])
def test_a_retry_that_leaves_no_time_to_run_is_refused(retry: dict[str, Any]) -> None:
    task = register()
    task.push_request(id="t-1", args=[], kwargs={}, retries=0, called_directly=False)
    try:
        with mock.patch.object(task, "apply_async") as publish, \
                pytest.raises(ValueError) as err:
            task.retry(**retry)
    finally:
        task.pop_request()
    assert not publish.called
    message = str(err.value)
    assert "\n" not in message and task.name in message
    assert f"HANDLER_VISIBILITY_TIMEOUT_S={VT}" in message


def test_retry_time_limits() -> None:
    assert retry_time_limits(0, hard=540, soft=480, app_hard=540, app_soft=480) == (540, 480)
    assert retry_time_limits(100, hard=540, soft=480, app_hard=540, app_soft=480) == (440, 380)
    # A handler's own limit above the app's is its budget: shortened by the wait too.
    assert retry_time_limits(9, hard=599, soft=598, app_hard=540, app_soft=480) == (590, 589)
    assert retry_time_limits(9, hard=None, soft=None, app_hard=540, app_soft=480) == (531, 471)
    assert retry_time_limits(480, hard=540, soft=480, app_hard=540, app_soft=480) is None


def test_a_retry_delay_that_leaves_no_time_to_run_is_refused_at_registration() -> None:
    def check(**options: Any) -> None:
        check_time_options("h", options, visibility_timeout_s=600, time_limit_s=540,
                           soft_time_limit_s=480)

    check(default_retry_delay=479)
    with pytest.raises(ValueError, match=r"^h: default_retry_delay=480 .*soft"):
        check(default_retry_delay=480)
    with pytest.raises(ValueError, match=r"^h: retry_backoff_max=500 "):
        check(autoretry_for=(OSError,), retry_backoff=True, retry_backoff_max=500)
    with pytest.raises(ValueError, match=r"^h: retry_kwargs=.*countdown"):
        check(autoretry_for=(OSError,), retry_kwargs={"countdown": 550})
