"""Lifecycle hooks through real workers: simulated recordings of each kind, with
the real-traffic patterns, duplicates, reordering, a failover and losses, stored
as the ingress stores them; each phase's hook runs exactly once with the record
that decided it."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import redis
from conftest import wait_for
from workers_support import store

from agora_callbacks import keys
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers.application import DEFAULT_QUEUE
from agora_callbacks.workers.builtin import store as records

pytestmark = pytest.mark.slow

SETTLE_S = 1
STALL_AFTER_S = 3
ENV = {"SETTLE_S": str(SETTLE_S), "STALL_AFTER_S": str(STALL_AFTER_S)}


def hooks_of(client: redis.Redis, sid: str) -> list[dict[str, Any]]:
    return [json.loads(x) for x in client.lrange(f"e2e:hooks:{sid}", 0, -1)]


def phases_of(client: redis.Redis, sid: str) -> list[str]:
    return [h["phase"] for h in hooks_of(client, sid)]


def noisy(events: list[dict[str, Any]], rng: random.Random, *, lose: tuple[int, ...] = (),
          dups: int = 4) -> list[bytes]:
    """The bodies as NCS delivers them: some lost, neighbours swapped, resends."""
    kept = [e for e in events if e["eventType"] not in lose]
    order = list(range(len(kept)))
    for i in range(0, len(order) - 1, 2):
        if rng.random() < 0.3:
            order[i], order[i + 1] = order[i + 1], order[i]
    order += rng.sample(range(len(kept)), min(dups, len(kept)))
    return [encode(kept[i]) for i in order]


def test_each_phase_fires_once_per_recording(redis_client: redis.Redis,
                                             start_worker: Any) -> None:
    rng = random.Random(12)
    cases: dict[str, tuple[list[bytes], list[str], dict[str, Any]]] = {}

    def case(name: str, events: list[dict[str, Any]], expected: list[str],
             lose: tuple[int, ...] = (), **checks: Any) -> None:
        cases[name] = (noisy(events, rng, lose=lose), expected, {**checks, "events": events,
                                                                 "lost": lose})

    sid = {name: f"{i:02d}" + "e2e" * 10 for i, name in enumerate(
        ["ind", "comp", "web", "webfail", "lost31", "stall", "exit1"])}
    case("ind", lifecycle("individual", sid["ind"], seed=1, real_traffic=True,
                          with_failover=True, minutes=2),
         ["started", "files_ready", "finished"], evidence="exit")
    case("comp", lifecycle("composite", sid["comp"], seed=2, with_backup=True, minutes=1),
         ["started", "files_ready", "finished"], lose=(11,), evidence="upload", backup=True)
    case("web", lifecycle("web", sid["web"], seed=3, real_traffic=True, with_failover=True,
                          minutes=1),
         ["started", "files_ready", "finished"], evidence="exit")
    case("webfail", lifecycle("web", sid["webfail"], seed=4, with_errors=True, minutes=1),
         ["started", "failed", "files_ready"], reason="web_capability_limit")
    case("lost31", lifecycle("individual", sid["lost31"], seed=5, minutes=1),
         ["started", "files_ready", "finished"], lose=(31,), evidence="exit")
    stall = lifecycle("individual", sid["stall"], seed=6, minutes=1)
    case("stall", stall[: [e["eventType"] for e in stall].index(41)],
         ["started", "stalled", "failed"], reason="stalled")
    exit1 = lifecycle("composite", sid["exit1"], seed=7, minutes=1)
    exit1[-1]["payload"]["details"]["exitStatus"] = 1
    case("exit1", exit1, ["started", "files_ready", "failed"], reason="exit_status")

    worker = start_worker("life", handlers="lifecycle_e2e_handlers",
                          queues=f"{DEFAULT_QUEUE},lifecycle", env=ENV)
    bodies = [b for raw, _e, _c in cases.values() for b in raw]
    for raw in bodies:
        store(redis_client, raw)

    def settled() -> bool:
        return all(len(phases_of(redis_client, sid[n])) >= len(exp)
                   for n, (_r, exp, _c) in cases.items())

    try:
        wait_for(settled, timeout=90, message="every recording's phases")
    except BaseException:
        for n in cases:
            rec = records.load(redis_client, sid[n]) or {}
            print(n, phases_of(redis_client, sid[n]), rec.get("event_count"),
                  rec.get("lifecycle"))
        print(worker.log())
        raise
    # Nothing more fires: the lifecycle timers of every recording are done.
    wait_for(lambda: not any(redis_client.zscore(keys.LIFECYCLE_TIMERS, sid[n])
                             for n in cases), timeout=30, message="lifecycle timers done")

    for name, (_raw, expected, checks) in cases.items():
        s = sid[name]
        hooks = hooks_of(redis_client, s)
        # Each phase's hook once. The order they ran in is not promised (hooks of
        # different phases are separate tasks, on several pool processes), and which
        # of two phases is decided first may follow the delivery order (a 31 and an
        # 11 swapped); started comes first.
        assert sorted(h["phase"] for h in hooks) == sorted(expected), name
        record = records.load(redis_client, s)
        assert record is not None
        kept = [e for e in checks["events"] if e["eventType"] not in checks["lost"]]
        assert record["event_count"] == len(kept), name  # each event folded once
        fired = record["lifecycle"]["fired"]
        assert sorted(fired) == sorted(expected) and record["lifecycle"]["pending"] == []
        assert all(fired["started"]["at_ms"] <= f["at_ms"] for f in fired.values()), name
        for hook in hooks:
            assert hook["info"] == fired[hook["phase"]], name
        if "evidence" in checks:
            assert fired["finished"]["evidence"] == checks["evidence"], name
            assert fired["files_ready"]["files"], name
            finished = next(h for h in hooks if h["phase"] == "finished")
            assert finished["files"] == fired["files_ready"]["files"]
        if "backup" in checks:
            assert fired["files_ready"]["backup"] is True
        if "reason" in checks:
            assert fired["failed"]["reason"]["code"] == checks["reason"], name
            assert fired["failed"]["reason"]["meaning"]
        # The recording's own event handler ran once per event 40 it sent.
        starts = sum(1 for e in kept if e["eventType"] == 40)
        assert int(redis_client.get(f"e2e:started40:{s}") or 0) == starts, name

    # Options pass through: the retried hook ran twice as one task, done once.
    for name, (_raw, expected, _c) in cases.items():
        done = redis_client.lrange(f"e2e:flaky-done:{sid[name]}", 0, -1)
        assert done == ([b"2"] if "finished" in expected else []), name
    assert redis_client.xlen(keys.DEADLETTERS) == 0
