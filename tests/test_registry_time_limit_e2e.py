"""A real worker stops a handler that runs past its time limit, before the broker's
visibility timeout would deliver it a second time (finding 8).

The worker runs with ``HANDLER_VISIBILITY_TIMEOUT_S=8`` and ``REDIS_RETRY_S=2``: the
handlers' hard time limit is then 5 s and their soft limit 2 s. Without the limits,
kombu restores the still-unacknowledged message after 8 s (its restore sweep runs
every second here) and a second copy of the handler starts beside the first. The
tests marked ``both_brokers`` run on RabbitMQ too, told a consumer timeout of 8 s
(``RABBITMQ_CONSUMER_TIMEOUT_S``): the same limits, set from it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

from agora_callbacks import deadletters
from agora_callbacks.settings import Settings

pytestmark = pytest.mark.slow

ENV = {"HANDLER_VISIBILITY_TIMEOUT_S": "8", "REDIS_RETRY_S": "2",
       # On RabbitMQ the limits are below its consumer_timeout, told as 8 s here
       # (the server's own is longer: these tests only need the same limits).
       "RABBITMQ_CONSUMER_TIMEOUT_S": "8",
       "CALLBACK_HANDLERS": "registry_time_limit_handlers", "BUILTIN_HANDLERS": "false"}
LIMITS = Settings.from_env(ENV)
VT = LIMITS.handler_visibility_timeout_s
#: Well below the worker's HANDLER_DEADLINE_S (30 s, workers_procs.FAST_ENV), after
#: which a handler that never reported would be dead-lettered as lost.
TURN_ENDS_WITHIN_S = 20


@pytest.fixture
def worker(redis_client: redis.Redis, redis_server: Any, broker: Any,
           tmp_path: Path) -> Iterator[Worker]:
    w = Worker(redis_server.url, "tl", log_dir=tmp_path, concurrency=2,
               handlers=ENV["CALLBACK_HANDLERS"], env=ENV,
               broker_url=broker.url if broker.kind == "amqp" else None)
    try:
        w.wait_ready(redis_client)
        yield w
    finally:
        w.stop()


def rows(client: redis.Redis, name: str, sid: str, seq: int | None = None) -> list[Any]:
    found = [json.loads(r) for r in client.lrange(name, 0, -1)]
    return [r for r in found if r["sid"] == sid and (seq is None or r["seq"] == seq)]




def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_slow_event(client: redis.Redis, sid: str, mode: str) -> dict[str, Any]:
    """Store events 0 (slow, in ``mode``) and 1 of ``sid``; event 0's first start."""
    client.set(f"tl:mode:{sid}:0", mode)
    store(client, body(sid, 0))
    store(client, body(sid, 1))  # dispatched only once event 0's turn has ended
    [first] = wait_for(lambda: rows(client, "tl:starts", sid, 0),  # type: ignore[misc]
                       message="the slow handler started")
    return first  # type: ignore[no-any-return]


def assert_stopped_once_before_the_timeout(client: redis.Redis, worker: Worker, sid: str,
                                           first: dict[str, Any], broker: Any) -> None:
    wait_for(lambda: rows(client, "tl:soft", sid) or len(rows(client, "tl:starts", sid, 0)) > 1,
             timeout=VT + 5, message=f"the soft time limit\n{worker.log()}")
    assert len(rows(client, "tl:starts", sid, 0)) == 1, \
        "the handler started a second time while its first run was alive"
    wait_for(lambda: not alive(first["pid"]) or rows(client, "tl:runs", sid, 1),
             timeout=VT, message="event 0's run stopped")
    # No handler task queued or unacknowledged: nothing the broker could deliver again.
    wait_for(lambda: broker.settled(client), timeout=VT, interval=0.1,
             message="the handler task acknowledged")
    stopped_after = time.time() - first["start"]
    assert stopped_after < VT, f"acknowledged only {stopped_after:.1f} s after the start"
    # Acknowledged: nothing can deliver it again. It started once and never returned.
    assert len(rows(client, "tl:starts", sid, 0)) == 1
    assert rows(client, "tl:runs", sid, 0) == []


def assert_dead_lettered_once_and_the_recording_moved_on(
        client: redis.Redis, worker: Worker, sid: str, exception: str) -> None:
    wait_for(lambda: rows(client, "tl:runs", sid, 1), timeout=TURN_ENDS_WITHIN_S,
             message=f"event 1 handled once event 0 was stopped\n{worker.log()}")
    letters = [d for d in deadletters.list_(client, count=1000) if d.key.startswith(f"{sid}:")]
    assert [(d.kind, d.key, d.handler) for d in letters] == [("handler", f"{sid}:40:0",
                                                              "tl.slow")], letters
    assert exception in letters[0].exception + letters[0].detail, letters[0]
    assert len(rows(client, "tl:starts", sid, 0)) == 1


def test_the_worker_gets_a_soft_and_a_hard_limit_below_the_timeout() -> None:
    assert (LIMITS.handler_soft_time_limit_s, LIMITS.handler_time_limit_s) == (2, 5)
    on_rabbitmq = Settings.from_env({**ENV, "CELERY_BROKER_URL": "amqp://localhost//"})
    assert (on_rabbitmq.handler_soft_time_limit_s, on_rabbitmq.handler_time_limit_s) == (2, 5)


@pytest.mark.both_brokers
def test_a_handler_past_its_soft_limit_is_stopped_once_and_dead_lettered_once(
        worker: Worker, redis_client: redis.Redis, broker: Any) -> None:
    sid = "tl-cooperative"
    first = start_slow_event(redis_client, sid, "cooperative")
    assert_stopped_once_before_the_timeout(redis_client, worker, sid, first, broker)
    assert_dead_lettered_once_and_the_recording_moved_on(redis_client, worker, sid,
                                                         "SoftTimeLimitExceeded")


@pytest.mark.both_brokers
def test_a_handler_that_ignores_its_soft_limit_is_killed_at_the_hard_one(
        worker: Worker, redis_client: redis.Redis, broker: Any) -> None:
    sid = "tl-stubborn"
    first = start_slow_event(redis_client, sid, "stubborn")
    assert_stopped_once_before_the_timeout(redis_client, worker, sid, first, broker)
    assert not alive(first["pid"]), "the stubborn handler's pool process still runs"
    assert "Hard time limit (5" in worker.log()


def test_a_handler_killed_at_its_hard_limit_is_dead_lettered_once(
        worker: Worker, redis_client: redis.Redis) -> None:
    sid = "tl-stubborn"
    start_slow_event(redis_client, sid, "stubborn")
    assert_dead_lettered_once_and_the_recording_moved_on(redis_client, worker, sid,
                                                         "TimeLimitExceeded")
