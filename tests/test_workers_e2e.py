"""End to end: stored bodies -> real Celery worker processes -> handlers.

Each test starts its own ``celery worker`` subprocesses (prefork) on the session's
Redis with short timeouts (``workers_procs.FAST_ENV``); the handlers of
``workers_e2e_handlers`` record every run in Redis. The tests marked
``both_brokers`` run twice: with the session's Redis as the Celery broker, and with
RabbitMQ (a virtual host of the session's own; ``tests/brokers.py``). The two
that do not involve the broker (runs never overlap; the intake exits with its
worker) run on Redis only.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
from collections import defaultdict
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, meta, store

from agora_callbacks import deadletters, keys
from agora_callbacks.inbox import fields_for

pytestmark = pytest.mark.slow




def rows(client: redis.Redis, name: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange(name, 0, -1)]


def runs_of(client: redis.Redis, handler: str = "every") -> list[dict[str, Any]]:
    return [r for r in rows(client, "t:runs") if r["handler"] == handler]


def assert_once_in_order_without_overlap(client: redis.Redis,
                                         expected: dict[str, list[int]]) -> None:
    """Each expected (sid, seq) handled once by ``every``; per sid, in ascending
    sequence, and every run of an event starts after all runs of the previous
    event ended (successful runs; a killed run has no end)."""
    done = runs_of(client)
    keys_done = [(r["sid"], r["seq"]) for r in done]
    assert len(keys_done) == len(set(keys_done)), "an event was handled twice"
    assert sorted(keys_done) == sorted((s, q) for s, seqs in expected.items() for q in seqs)
    by_sid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows(client, "t:runs"):
        by_sid[r["sid"]].append(r)
    for sid, events in by_sid.items():
        order = sorted(events, key=lambda r: r["start"])
        seqs = [r["seq"] for r in order if r["handler"] == "every"]
        assert seqs == sorted(seqs), f"{sid}: handled out of order: {seqs}"
        by_seq: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for r in events:
            by_seq[r["seq"]].append(r)
        ordered = sorted(by_seq)
        for prev, nxt in pairwise(ordered):
            prev_end = max(r["end"] for r in by_seq[prev])
            next_start = min(r["start"] for r in by_seq[nxt])
            assert next_start >= prev_end, f"{sid}: {nxt} started before {prev} ended"


@pytest.mark.both_brokers
def test_many_recordings_copies_and_shuffles_are_handled_once_in_order(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    rng = random.Random(7)
    start_worker("a")
    start_worker("b")
    expected: dict[str, list[int]] = {}
    bodies: list[bytes] = []
    for r in range(25):
        sid = f"rec{r:03d}"
        expected[sid] = list(range(8))
        for seq in range(8):
            event_type = 31 if seq == 5 else (999 if seq == 6 else 40)
            raw = body(sid, seq, event_type)
            bodies.append(raw)
            if seq % 3 == 0:
                bodies.append(raw)  # NCS resend: same noticeId
            if seq % 4 == 1:
                bodies.append(body(sid, seq, event_type))  # redundant copy: new noticeId
    rng.shuffle(bodies)  # all stored within a few ms: inside the hold window
    bodies.append(b"this is not json")
    for raw in bodies:
        store(redis_client, raw)
    total = sum(len(v) for v in expected.values())
    wait_for(lambda: len(runs_of(redis_client)) >= total
             and len(runs_of(redis_client, "files")) >= 25, timeout=60,
             message="every event handled")
    assert_once_in_order_without_overlap(redis_client, expected)
    files = runs_of(redis_client, "files")
    assert sorted(r["sid"] for r in files) == sorted(expected)
    assert all(r["seq"] == 5 for r in files)
    assert not any(r["late"] or r["gap"] for r in runs_of(redis_client))
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.body) for d in letters] == [
        ("body", "invalid_json", b"this is not json")]
    counters = redis_client.hgetall(keys.COUNTERS)
    assert int(counters[b"duplicates"]) == len(bodies) - 1 - total
    wait_for(lambda: redis_client.xlen(keys.INBOX) == 0, message="inbox drained")


@pytest.mark.both_brokers
def test_gap_late_retry_and_dead_lettered_handler(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    sid = "gappy"
    redis_client.hset(f"t:ctl:{sid}:3", "fail_times", 1)
    redis_client.hset(f"t:ctl:{sid}:4", "always_fail", 1)
    start_worker("a")
    store(redis_client, body(sid, 0))
    store(redis_client, body(sid, 2))  # 1 is missing: skipped after the hold window
    wait_for(lambda: len(runs_of(redis_client)) == 2, message="0 and 2 handled")
    store(redis_client, body(sid, 1))  # arrives after its turn: late
    wait_for(lambda: len(runs_of(redis_client)) == 3, message="late 1 handled")
    for seq in (3, 4, 5):
        store(redis_client, body(sid, seq))
    wait_for(lambda: len(runs_of(redis_client)) == 5, message="3 and 5 handled")
    done = {r["seq"]: r for r in runs_of(redis_client)}
    assert [r["seq"] for r in runs_of(redis_client)] == [0, 2, 1, 3, 5]
    assert done[2]["gap"] == [1, 1] and not done[2]["late"]
    assert done[1]["late"] and done[1]["gap"] is None
    assert not done[3]["late"] and not done[5]["late"]
    starts = [r["seq"] for r in rows(redis_client, "t:starts")]
    assert starts.count(3) == 2  # failed once, retried once
    assert starts.count(4) == 3  # first attempt + max_retries=2, then dead-lettered
    letters = [d for d in deadletters.list_(redis_client) if d.kind == "handler"]
    assert len(letters) == 1
    assert letters[0].handler == "e2e.every" and letters[0].key == f"{sid}:40:4"
    assert "never succeeds" in letters[0].exception
    assert json.loads(letters[0].body)["payload"]["sequence"] == 4
    # 5 started only after 4 was dead-lettered.
    four_last = max(r["start"] for r in rows(redis_client, "t:starts") if r["seq"] == 4)
    assert done[5]["start"] > four_last


@pytest.mark.both_brokers
def test_a_handler_that_ignores_or_rejects_its_event_ends_its_turn(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    """Celery's Ignore and Reject are the handler's explicit choice: the recording
    moves on at once (not after HANDLER_DEADLINE_S as a lost handler); Ignore is
    done, Reject is a dead letter ``rejected``, Reject(requeue=True) runs again."""
    sid = "choices"
    redis_client.hset(f"t:ctl:{sid}:1", "ignore", 1)
    redis_client.hset(f"t:ctl:{sid}:2", "reject", 1)
    redis_client.hset(f"t:ctl:{sid}:3", "requeue_times", 1)
    start_worker("a")
    for seq in range(5):
        store(redis_client, body(sid, seq))
    # Well within FAST_ENV's HANDLER_DEADLINE_S (30 s), after which a handler that
    # never reports is lost.
    wait_for(lambda: len(runs_of(redis_client)) == 3, timeout=15, message="0, 3 and 4 handled")
    assert [r["seq"] for r in runs_of(redis_client)] == [0, 3, 4]
    starts = [r for r in rows(redis_client, "t:starts") if r["handler"] == "every"]
    assert [r["seq"] for r in starts] == [0, 1, 2, 3, 3, 4]  # 3 ran again once
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.key) for d in letters] == [
        ("handler", "rejected", "e2e.every", f"{sid}:40:2")]
    assert "Reject" in letters[0].exception and "not an event for us" in letters[0].exception
    assert json.loads(letters[0].body)["payload"]["sequence"] == 2
    assert int(redis_client.hget(keys.COUNTERS, "deadletters_handler") or 0) == 1


@pytest.mark.both_brokers
def test_a_pool_process_killed_mid_handler_loses_nothing(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    sid = "killed-child"
    redis_client.hset(f"t:ctl:{sid}:2", "sleep_ms", 1500)
    start_worker("a")
    start_worker("b")
    for seq in range(6):
        store(redis_client, body(sid, seq))
    first = wait_for(lambda: [r for r in rows(redis_client, "t:starts") if r["seq"] == 2],
                     message="handler of 2 started")
    victim = first[0]["pid"]  # type: ignore[index]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(runs_of(redis_client)) == 6, timeout=60, message="all handled")
    assert_once_in_order_without_overlap(redis_client, {sid: list(range(6))})
    starts = [r for r in rows(redis_client, "t:starts") if r["seq"] == 2]
    assert len(starts) == 2 and starts[1]["pid"] != victim, starts


@pytest.mark.both_brokers
def test_a_whole_worker_killed_mid_handler_loses_nothing(
        start_worker: Callable[..., Worker], redis_client: redis.Redis, broker: Any) -> None:
    """SIGKILL of a worker's main process and its pool while a handler runs: its
    unacknowledged handler task comes back (RabbitMQ: at once, when the dead
    connection closes; Redis: after HANDLER_VISIBILITY_TIMEOUT_S, 10 s here) and
    runs on the other worker; every event once, in order."""
    sid = "killed-worker"
    redis_client.hset(f"t:ctl:{sid}:2", "sleep_ms", 1500)
    workers = [start_worker("a"), start_worker("b")]
    for seq in range(5):
        store(redis_client, body(sid, seq))
    first = wait_for(lambda: [r for r in rows(redis_client, "t:starts") if r["seq"] == 2],
                     message="handler of 2 started")
    pid = first[0]["pid"]  # type: ignore[index]
    [victim] = [w for w in workers if pid in w.children()]
    victim.kill()
    wait_for(lambda: len(runs_of(redis_client)) == 5, timeout=60,
             message="all handled after the worker died")
    assert_once_in_order_without_overlap(redis_client, {sid: list(range(5))})
    starts = [r for r in rows(redis_client, "t:starts") if r["seq"] == 2]
    assert len(starts) == 2 and starts[1]["pid"] not in (pid, *victim.children()), starts
    assert deadletters.count(redis_client) == 0


@pytest.mark.both_brokers
def test_a_worker_killed_while_taking_in_bodies_loses_nothing(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    rng = random.Random(3)
    # The dead worker's bodies are taken over within 1.5 x CLAIM_IDLE_MS (0.6 s);
    # a 3 s hold leaves room for a loaded machine, so that none of them comes late.
    slow_hold = {"REORDER_HOLD_MS": "3000"}
    a = start_worker("a", env=slow_hold)
    start_worker("b", env=slow_hold)
    expected = {f"k{r:03d}": list(range(10)) for r in range(40)}
    bodies = [body(sid, seq) for sid, seqs in expected.items() for seq in seqs]
    rng.shuffle(bodies)
    pipe = redis_client.pipeline(transaction=False)
    for raw in bodies:
        pipe.xadd(keys.INBOX, fields_for(raw, meta()))
    pipe.execute()

    def a_holds_entries() -> bool:
        pending = redis_client.xpending_range(keys.INBOX, keys.INBOX_GROUP, "-", "+", 1000)
        return any(str(p["consumer"], "utf-8").endswith(f":{a.pid}") for p in pending)

    wait_for(a_holds_entries, interval=0.001, message="worker a taking in bodies")
    a.kill()
    wait_for(lambda: len(runs_of(redis_client)) >= 400, timeout=90,
             message="every event handled")
    assert_once_in_order_without_overlap(redis_client, expected)
    wait_for(lambda: redis_client.xlen(keys.INBOX) == 0, message="inbox drained")
    assert deadletters.count(redis_client) == 0


def test_runs_of_one_recording_never_overlap_while_recordings_run_in_parallel(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    """The ordering rule itself: with four pool processes free to run anything,
    the runs of one recording are strictly one after the other (both handlers of
    an event before any of the next), while different recordings overlap."""
    sids = [f"par{i}" for i in range(4)]
    for sid in sids:
        for seq in range(5):
            redis_client.hset(f"t:ctl:{sid}:{seq}", "sleep_ms", 60)
    start_worker("a")
    start_worker("b")
    for seq in range(5):
        for sid in sids:
            store(redis_client, body(sid, seq, 31))
    wait_for(lambda: len(rows(redis_client, "t:runs")) == 40, timeout=60,
             message="all runs")
    all_runs = rows(redis_client, "t:runs")
    for sid in sids:
        mine = sorted((r for r in all_runs if r["sid"] == sid), key=lambda r: r["start"])
        for seq in range(4):
            ends = [r["end"] for r in mine if r["seq"] == seq]
            starts = [r["start"] for r in mine if r["seq"] == seq + 1]
            assert len(ends) == 2 and len(starts) == 2
            assert min(starts) >= max(ends), f"{sid}: {seq + 1} overlapped {seq}"

    def overlap(x: dict[str, Any], y: dict[str, Any]) -> bool:
        return x["start"] < y["end"] and y["start"] < x["end"]

    across = any(overlap(x, y) for x in all_runs for y in all_runs if x["sid"] != y["sid"])
    assert across, "recordings did not run in parallel: the check above proves nothing"


def test_the_intake_process_exits_with_its_worker(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    """The intake runs in a child of the worker; SIGKILL of the worker's main
    process alone does not leave it running."""
    import psutil

    worker = start_worker("a")
    kids = psutil.Process(worker.pid).children()
    # Titled "agora-callbacks intake <consumer>" once it runs (spawn_main before).
    intake = [k for k in kids if " ".join(k.cmdline()).startswith("agora-callbacks intake")
              or "spawn" in " ".join(k.cmdline())]
    assert len(intake) == 1, [k.cmdline() for k in kids]
    os.kill(worker.pid, signal.SIGKILL)
    worker.proc.wait()
    wait_for(lambda: not intake[0].is_running() or intake[0].status() == psutil.STATUS_ZOMBIE,
             timeout=10, message="intake process gone")
    for kid in kids:  # the pool processes: psutil checks they are still ours
        with contextlib.suppress(psutil.NoSuchProcess):
            kid.kill()
