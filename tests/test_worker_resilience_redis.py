"""A worker rides out a Redis outage: the broker connection is lost while a
handler runs (its acknowledgement cannot be sent), Redis comes back a few seconds
later, and the same worker handles new events.

The cause (finding 10, kombu 5.7.0 / Celery 5.7.0), which ``workers/broker.py``
turns into an ordinary connection error: on the connection loss, Celery's
``Consumer.on_connection_error_after_connected`` calls ``connection.collect()``
and then ``connection.close()``. ``collect()`` closes the default channel, whose
close is interrupted by the dead BRPOP socket (a ``ConnectionError``, swallowed,
before the channel is marked closed), then drops the transport's ``client``.
``close()`` closes that channel again; this time it gets as far as restoring the
unacknowledged messages (the running ``acks_late`` handler tasks), which builds a
new Redis pool from ``transport.client``, now ``None``: ``AttributeError:
'NoneType' object has no attribute 'hostname'``, which Celery takes for an
"Unrecoverable error": the worker exited 1. The channel of ``workers/broker.py``
raises ``redis.ConnectionError`` instead when its transport's client is gone,
which kombu swallows there and Celery recovers from. Public settings tried first:
``worker_cancel_long_running_tasks_on_connection_loss`` acts after that close;
``worker_enable_remote_control=False`` removes the pub/sub connection whose loss
is usually noticed first, but also ``celery inspect ping`` and Flower's worker
controls; ``ack_emulation=False`` would lose a dead worker's tasks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

pytestmark = pytest.mark.slow




def _runs(client: redis.Redis) -> list[dict[str, Any]]:
    try:
        return [json.loads(r) for r in client.lrange("t:runs", 0, -1)]
    except redis.RedisError:
        return []


def test_a_worker_survives_redis_going_down_while_a_handler_runs(
        start_worker: Callable[..., Worker], redis_client: redis.Redis,
        redis_server: Any) -> None:
    sleep_s = 2.0
    redis_client.hset("t:ctl:outage:0", "sleep_ms", int(sleep_s * 1000))
    worker = start_worker("a")
    store(redis_client, body("outage", 0))
    started = wait_for(lambda: redis_client.lrange("t:starts", 0, -1),
                       message="the handler started")
    began = json.loads(started[0])["start"]  # type: ignore[index]
    redis_server.stop()
    # The handler ends (its task is acknowledged, or tried to be) while Redis is
    # down; Redis stays down a little longer.
    wait_for(lambda: time.time() > began + sleep_s + 2.0 or gave_up(worker),
             timeout=30, interval=0.05, message="the handler's end, Redis still down")
    redis_server.start()
    assert not gave_up(worker), worker.log()
    store(redis_client, body("after", 0))
    wait_for(lambda: gave_up(worker) or any(r["sid"] == "after" for r in _runs(redis_client)),
             timeout=30, message=f"an event stored after the outage handled\n{worker.log_path}")
    assert not gave_up(worker), worker.log()


def gave_up(worker: Worker) -> bool:
    """The worker exited, or is on its way out: Celery logged an unrecoverable
    error (its warm shutdown may still wait for a running handler)."""
    return worker.proc.poll() is not None or "Unrecoverable error" in worker.log()
