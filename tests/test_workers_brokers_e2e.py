"""What depends on the Celery broker, end to end, with Redis and with RabbitMQ.

Real ``celery worker`` processes (``workers_procs.FAST_ENV``) with the session's
Redis for the inbox and the ordering state, and as the Celery broker either that
Redis or RabbitMQ (a virtual host of the session's own; ``tests/brokers.py``):

- the workers really consume from the broker they were given;
- a late publisher: a handler task published by a worker that stalled past
  ``DISPATCH_LEASE_MS``, after the timer sweep had taken its turn back and
  published it again, arrives while the handler runs: it is skipped at its start
  (``start.lua``), the handler runs once;
- a handler longer than Redis's visibility timeout: on RabbitMQ it runs once, to
  its end, and the recording's next event waits for it; on Redis it is stopped by
  its time limit (and dead-lettered), and never started a second time while alive.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import kombu
import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

from agora_callbacks import deadletters, keys
from agora_callbacks.workers.application import DEFAULT_QUEUE

pytestmark = pytest.mark.slow


def rows(client: redis.Redis, key: str, sid: str) -> list[dict[str, Any]]:
    return [r for r in (json.loads(x) for x in client.lrange(key, 0, -1)) if r["sid"] == sid]


def counter(client: redis.Redis, name: str) -> int:
    return int(client.hget(keys.COUNTERS, name) or 0)


@pytest.mark.parametrize("broker", ["amqp"], indirect=True)
def test_workers_given_rabbitmq_consume_from_it_and_not_from_redis(
        start_worker: Callable[..., Worker], redis_client: redis.Redis, broker: Any) -> None:
    start_worker("a")
    store(redis_client, body("rabbit", 0))
    wait_for(lambda: rows(redis_client, "t:runs", "rabbit"), message="the event handled")
    with broker.connection() as conn:
        declared = conn.default_channel.queue_declare(DEFAULT_QUEUE, passive=True)
    assert declared.consumer_count >= 1, "no worker consumes RabbitMQ's default queue"
    # kombu's Redis transport would have left its binding and queue keys in Redis.
    assert not redis_client.keys("_kombu*") and not redis_client.exists(DEFAULT_QUEUE, "unacked")


def republish(broker: Any, message: dict[str, Any]) -> None:
    """Publish a message taken with ``Broker.take`` again, as it was (same task id):
    what its stalled publisher finally sends."""
    exchange = kombu.Exchange(DEFAULT_QUEUE)
    with broker.connection() as conn:
        conn.Producer().publish(message["body"], exchange=exchange, routing_key=DEFAULT_QUEUE,
                                headers=message["headers"], serializer="json",
                                declare=[kombu.Queue(DEFAULT_QUEUE, exchange, DEFAULT_QUEUE)])


@pytest.mark.both_brokers
def test_a_late_publisher_s_copy_is_skipped_and_the_handler_runs_once(
        start_worker: Callable[..., Worker], redis_client: redis.Redis, broker: Any) -> None:
    sid = "late-publisher"
    redis_client.hset(f"t:ctl:{sid}:0", "sleep_ms", 1500)
    # A worker that takes in bodies and sweeps timers, but runs no handler task.
    start_worker("intake-only", queues="nobody")
    store(redis_client, body(sid, 0))
    # The first publish, held back as a publisher stalled past its lease would.
    late = wait_for(broker.take, timeout=10, message="the handler task published")
    assert isinstance(late, dict)
    # DISPATCH_LEASE_MS (1 s) later, the sweep takes the turn back and publishes again.
    wait_for(lambda: counter(redis_client, "republished") >= 1, timeout=10,
             message="the turn published again by the sweep")
    start_worker("handlers")
    wait_for(lambda: rows(redis_client, "t:starts", sid), timeout=10,
             message="the republished copy started")
    skipped = counter(redis_client, "skipped_copies")
    republish(broker, late)  # arrives while the handler runs
    wait_for(lambda: counter(redis_client, "skipped_copies") > skipped, timeout=10,
             message="the late copy skipped at its start")
    store(redis_client, body(sid, 1))
    wait_for(lambda: len(rows(redis_client, "t:runs", sid)) >= 2, timeout=15,
             message="the recording moved on")
    assert [r["seq"] for r in rows(redis_client, "t:starts", sid)] == [0, 1]
    assert [r["seq"] for r in rows(redis_client, "t:runs", sid)] == [0, 1]
    assert deadletters.count(redis_client) == 0


#: HANDLER_DEADLINE_S of 60 s: on RabbitMQ a handler's limits are then below half of
#: it (30 s: hard limit 27 s, soft 24 s); on Redis below the visibility timeout of
#: FAST_ENV (10 s: hard 7 s, soft 4 s).
LONG_ENV = {"HANDLER_DEADLINE_S": "60"}
VISIBILITY_S = 10
#: Longer than Redis's visibility timeout, shorter than RabbitMQ's soft limit here.
LONG_RUN_MS = 13_000


@pytest.mark.both_brokers
def test_a_handler_longer_than_redis_s_visibility_timeout(
        start_worker: Callable[..., Worker], redis_client: redis.Redis, broker: Any) -> None:
    sid = "long-handler"
    redis_client.hset(f"t:ctl:{sid}:0", "sleep_ms", LONG_RUN_MS)
    worker = start_worker("a", env=LONG_ENV)
    start_worker("b", env=LONG_ENV)  # free to take a second copy, if one came
    store(redis_client, body(sid, 0))
    store(redis_client, body(sid, 1))  # waits for event 0's turn to end
    [first] = wait_for(lambda: rows(redis_client, "t:starts", sid),  # type: ignore[misc]
                       message="the long handler started")
    assert first["seq"] == 0
    if broker.kind == "amqp":
        # One delivery, however long: it runs to its end, once, and event 1 waits.
        wait_for(lambda: len(rows(redis_client, "t:runs", sid)) >= 2, timeout=45,
                 message=f"the long handler and the next event handled\n{worker.log()}")
        runs = rows(redis_client, "t:runs", sid)
        assert [r["seq"] for r in runs] == [0, 1]
        assert runs[0]["end"] - runs[0]["start"] >= LONG_RUN_MS / 1000
        assert runs[1]["start"] >= runs[0]["end"], "event 1 started before 0 ended"
        assert deadletters.count(redis_client) == 0
    else:
        # Stopped by its soft time limit, dead-lettered, and the recording moves on.
        wait_for(lambda: rows(redis_client, "t:runs", sid), timeout=30,
                 message=f"event 1 handled after event 0 was stopped\n{worker.log()}")
        letters = deadletters.list_(redis_client)
        assert [(d.kind, d.key) for d in letters] == [("handler", f"{sid}:40:0")]
        assert "SoftTimeLimitExceeded" in letters[0].exception
        # Acknowledged, and nothing queued or unacknowledged left that kombu could
        # restore after the visibility timeout: no second start can come.
        wait_for(lambda: redis_client.hlen("unacked") == 0
                 and redis_client.llen(DEFAULT_QUEUE) == 0,
                 timeout=VISIBILITY_S, message="the handler task acknowledged")
        assert time.time() - first["start"] < VISIBILITY_S + 1
    starts = [r["seq"] for r in rows(redis_client, "t:starts", sid)]
    assert starts == [0, 1], f"the long handler started more than once: {starts}"
