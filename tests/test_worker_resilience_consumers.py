"""Dead stream consumers are removed once they hold nothing
(``workers.consumers.remove_idle_consumers``), against the real Redis."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import redis
from conftest import wait_for

from agora_callbacks.workers.consumers import remove_idle_consumers

STREAM, GROUP = "t:stream", "g"


def consumers(client: redis.Redis) -> dict[str, dict[str, Any]]:
    return {(c["name"].decode() if isinstance(c["name"], bytes) else c["name"]): c
            for c in client.xinfo_consumers(STREAM, GROUP)}


def idle_at_least(client: redis.Redis, names: list[str], ms: int) -> Callable[[], bool]:
    def check() -> bool:
        found = consumers(client)
        return all(found[n]["idle"] >= ms for n in names)
    return check


def test_idle_consumers_holding_nothing_are_removed_and_no_other(
        redis_client: redis.Redis) -> None:
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    for name in ("dead-1", "dead-2", "me", "fresh"):
        redis_client.xgroup_createconsumer(STREAM, GROUP, name)
    entry = redis_client.xadd(STREAM, {"f": "v"})
    redis_client.xreadgroup(GROUP, "holder", {STREAM: ">"}, count=1)  # pending: 1
    wait_for(idle_at_least(redis_client, ["dead-1", "dead-2", "me", "holder"], 200),
             message="consumers idle for 200 ms")
    redis_client.xreadgroup(GROUP, "fresh", {STREAM: ">"}, count=1)  # nothing, but active

    removed = remove_idle_consumers(redis_client, STREAM, GROUP, 200, keep="me")

    assert sorted(removed) == ["dead-1", "dead-2"]
    left = consumers(redis_client)
    assert sorted(left) == ["fresh", "holder", "me"]
    assert left["holder"]["pending"] == 1
    pending = redis_client.xpending_range(STREAM, GROUP, "-", "+", 10)
    assert [(p["message_id"], p["consumer"]) for p in pending] == [(entry, b"holder")]
    # Nothing more to remove: the same call again removes nothing.
    assert remove_idle_consumers(redis_client, STREAM, GROUP, 200, keep="me") == []


def test_a_consumer_whose_entries_were_taken_over_is_removed(
        redis_client: redis.Redis) -> None:
    """The dead worker's case: another consumer takes its entries over
    (XAUTOCLAIM); from then on the dead one holds nothing and goes."""
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    redis_client.xadd(STREAM, {"f": "v"})
    redis_client.xreadgroup(GROUP, "dead", {STREAM: ">"}, count=1)
    wait_for(idle_at_least(redis_client, ["dead"], 50), message="dead idle")
    assert remove_idle_consumers(redis_client, STREAM, GROUP, 50, keep="alive") == []
    redis_client.xautoclaim(STREAM, GROUP, "alive", 0)
    assert remove_idle_consumers(redis_client, STREAM, GROUP, 50, keep="alive") == ["dead"]
    assert sorted(consumers(redis_client)) == ["alive"]


def test_a_missing_stream_or_group_has_nothing_to_remove(redis_client: redis.Redis) -> None:
    assert remove_idle_consumers(redis_client, STREAM, GROUP, 0, keep="me") == []
    redis_client.xadd(STREAM, {"f": "v"})
    assert remove_idle_consumers(redis_client, STREAM, GROUP, 0, keep="me") == []
    with pytest.raises(ValueError):
        remove_idle_consumers(redis_client, STREAM, GROUP, -1, keep="me")


def test_a_consumer_given_an_entry_during_removal_never_loses_it(
        redis_client: redis.Redis) -> None:
    """Race: a reader takes entries one at a time and acknowledges each, so it
    holds nothing between two reads, while removals with a 0 ms threshold delete
    it whenever it holds nothing. ``XGROUP DELCONSUMER`` drops a consumer's
    pending entries: had one been deleted between being checked (nothing pending)
    and deleted (one entry just read), its entry would be gone from the pending
    list and its ``XACK`` would count 0. Every acknowledgement counts 1."""
    total = 3000
    redis_client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    pipe = redis_client.pipeline(transaction=False)
    for i in range(total):
        pipe.xadd(STREAM, {"i": i})
    pipe.execute()
    done = threading.Event()
    acks: list[int] = []
    removals: list[str] = []

    def read() -> None:
        reader = redis.Redis(connection_pool=redis_client.connection_pool)
        try:
            while True:
                reply: Any = reader.xreadgroup(GROUP, "reader", {STREAM: ">"}, count=1)
                if not reply or not reply[0][1]:
                    return
                acks.append(reader.xack(STREAM, GROUP, reply[0][1][0][0]))
        finally:
            done.set()

    def remove() -> None:
        remover = redis.Redis(connection_pool=redis_client.connection_pool)
        while not done.is_set():
            removals.extend(remove_idle_consumers(remover, STREAM, GROUP, 0, keep="me"))

    threads = [threading.Thread(target=read), threading.Thread(target=remove)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(acks) == total
    assert removals.count("reader") > 10, "the reader was hardly ever removed: no race tried"
    assert acks.count(0) == 0, f"{acks.count(0)} entries lost from the pending list"
    assert redis_client.xpending(STREAM, GROUP)["pending"] == 0
