"""Redis away for a moment just as handlers end (findings 3 and 11).

A real worker; the handler of the first event pauses Redis's writes right after
its run (``CLIENT PAUSE ... WRITE``, as a failover or a latency spike would): the
handler's outcome must still be recorded (tried again with backoff, within
``REDIS_RETRY_S``), the recording must move on at once when Redis is back (not
after ``HANDLER_VISIBILITY_TIMEOUT_S`` or ``HANDLER_DEADLINE_S``), and no handler
may run twice.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

from agora_callbacks import deadletters

pytestmark = pytest.mark.slow




def rows(client: redis.Redis, key: str) -> list[dict[str, object]]:
    return [json.loads(r) for r in client.lrange(key, 0, -1)]


def test_a_handler_ending_while_redis_pauses_is_recorded_once_and_the_recording_moves_on(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    sid = "paused"
    # 1.5 s of paused writes: longer than REDIS_TIMEOUT_S (1 s, the first try
    # times out), shorter than the e2e workers' REDIS_RETRY_S (2 s).
    redis_client.hset(f"t:ctl:{sid}:0", "pause_redis_ms", 1500)
    worker = start_worker("a")
    for seq in range(4):
        store(redis_client, body(sid, seq))
    # Well inside HANDLER_VISIBILITY_TIMEOUT_S (10 s) and HANDLER_DEADLINE_S (30 s),
    # the two waits a forgotten outcome used to cost.
    wait_for(lambda: len(rows(redis_client, "t:runs")) >= 4, timeout=8,
             message="every event handled without waiting for a timeout")
    starts = Counter(r["seq"] for r in rows(redis_client, "t:starts"))
    assert starts == {0: 1, 1: 1, 2: 1, 3: 1}, f"a handler ran twice: {starts}"
    assert [r["seq"] for r in rows(redis_client, "t:runs")] == [0, 1, 2, 3]
    assert deadletters.count(redis_client) == 0
    assert worker.proc.poll() is None, "the worker must ride out the pause"
    assert "handler finish failed, trying again" in worker.log()


@pytest.mark.both_brokers
def test_a_handler_task_message_lost_by_the_broker_is_published_again(
        start_worker: Callable[..., Worker], redis_client: redis.Redis, broker: Any) -> None:
    """Finding 12: a message in neither the queue nor kombu's unacknowledged set (a
    worker SIGKILLed between taking it and recording it) used to leave its recording
    waiting HANDLER_DEADLINE_S and end as a ``lost`` dead letter. The turn's handler
    has not started within DISPATCH_LEASE_MS: it is published again, runs once."""
    sid = "dropped"
    # A worker that takes in bodies and sweeps timers, but runs no handler task:
    # its pool consumes a queue nobody publishes to.
    start_worker("intake-only", queues="nobody")
    store(redis_client, body(sid, 0))
    # The handler task's message, as the broker would lose it.
    lost = wait_for(broker.take, timeout=10,
                    message="the handler task published")
    assert lost
    start_worker("handlers")
    # DISPATCH_LEASE_MS is 1 s for these workers; HANDLER_DEADLINE_S 30 s.
    wait_for(lambda: len(rows(redis_client, "t:runs")) >= 1, timeout=10,
             message="the event handled after its publish lease")
    store(redis_client, body(sid, 1))
    wait_for(lambda: len(rows(redis_client, "t:runs")) >= 2, timeout=10,
             message="the recording moved on")
    assert [r["seq"] for r in rows(redis_client, "t:starts")] == [0, 1]
    assert deadletters.count(redis_client) == 0
    assert int(redis_client.hget("acb:counters", "republished") or 0) >= 1
