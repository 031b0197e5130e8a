"""The record's compare-and-set store, ``update_record`` against concurrent folds,
the lifecycle timers and sweep, and the lifecycle settings (real Redis)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import redis

from agora_callbacks import keys
from agora_callbacks.errors import ConfigError
from agora_callbacks.schemas import parse_event
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers import hooks
from agora_callbacks.workers.builtin import lifecycle as life
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import fold
from agora_callbacks.workers.builtin.record import MAX_ITEMS

SID = "5e" * 16


def test_save_if_writes_only_over_what_was_read(redis_client: redis.Redis) -> None:
    first = store.read(redis_client, SID)
    assert first.record is None and first.tag == ""
    assert store.save_if(redis_client, SID, {"n": 1}, 60, first.tag, due_ms=5) == "ok"
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) == 5
    assert 0 < redis_client.ttl(keys.recording_state(SID)) <= 60
    # Another writer read the same empty record: refused.
    assert store.save_if(redis_client, SID, {"n": 2}, 60, first.tag) == "conflict"
    second = store.read(redis_client, SID, with_time=True)
    assert second.record == {"n": 1} and second.now_ms
    assert store.save_if(redis_client, SID, {"n": 3}, 60, second.tag, due_ms=0) == "ok"
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) is None
    # A turn-path write needs the turn to be current.
    third = store.read(redis_client, SID, with_turn=True)
    assert third.turn is None
    assert store.save_if(redis_client, SID, {"n": 4}, 60, third.tag, turn="7|40:7") == "stale"
    redis_client.hset(keys.recording_order(SID), "cur", "7|40:7")
    assert store.save_if(redis_client, SID, {"n": 4}, 60, third.tag, turn="7|40:7") == "ok"
    assert store.load(redis_client, SID) == {"n": 4}


def test_update_record_and_folds_lose_nothing_to_each_other(redis_client: redis.Redis,
                                                           settings: Settings) -> None:
    events = [parse_event(encode(e)) for e in lifecycle("composite", SID, seed=3)]
    errors: list[BaseException] = []

    def folds() -> None:
        try:
            for e in events:
                life.fold_event(redis_client, settings, SID, e, key=f"k{e.sequence}",
                                late=False, gap=None)
        except BaseException as exc:
            errors.append(exc)

    def updates() -> None:
        client = redis.Redis(connection_pool=redis_client.connection_pool)
        try:
            for n in range(40):
                def change(record: dict[str, Any], n: int = n) -> bool:
                    record.setdefault("notes", []).append(n)
                    return True
                life.update_record(client, SID, change, source="test", create=True,
                                   settings=settings)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=folds), threading.Thread(target=updates)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    record = store.load(redis_client, SID)
    assert record is not None
    assert record["event_count"] == len(events)  # no fold lost to an update...
    assert record["notes"] == list(range(40))  # ...and no update lost to a fold
    expected = None
    for e in events:
        expected = fold(expected, e, key=f"k{e.sequence}")
    assert expected is not None
    assert record["files"] == expected["files"] and record["status"] == expected["status"]
    assert sorted(record["lifecycle"]["fired"]) == ["files_ready", "finished", "started"]


def test_update_record_refusals(redis_client: redis.Redis, settings: Settings) -> None:
    assert life.update_record(redis_client, SID, lambda r: True, source="test",
                              settings=settings) is None  # absent, create=False
    assert not redis_client.exists(keys.recording_state(SID))
    made = life.update_record(redis_client, SID, lambda r: True, source="test",
                              create=True, settings=settings)
    assert made is not None and made["sid"] == SID

    def refuse(record: dict[str, Any]) -> bool:
        record["scribble"] = True
        return False

    kept = life.update_record(redis_client, SID, refuse, source="test", settings=settings)
    assert kept is not None and "scribble" not in kept
    assert "scribble" not in (store.load(redis_client, SID) or {})


def test_a_fold_is_skipped_once_its_turn_is_over(redis_client: redis.Redis,
                                                settings: Settings) -> None:
    e = parse_event(encode(lifecycle("individual", SID, seed=4)[0]))
    redis_client.hset(keys.recording_order(SID), "cur", "9|40:9")
    out = life.fold_event(redis_client, settings, SID, e, key="k0", late=False, gap=None,
                          turn="0|30:0")
    assert out.status == "stale" and store.load(redis_client, SID) is None
    timeline = keys.recording_timeline(SID)
    assert redis_client.exists(timeline) == 0  # the event's member only with its fold
    out = life.fold_event(redis_client, settings, SID, e, key="k0", late=False, gap=None,
                          turn="9|40:9", meta={"received_ms": 77})
    assert out.status == "saved"
    again = life.fold_event(redis_client, settings, SID, e, key="k0", late=False, gap=None,
                            turn="9|40:9", meta={"received_ms": 77})
    assert again.status == "unchanged"
    (member,) = redis_client.zrange(timeline, 0, -1, withscores=True)
    entry = json.loads(member[0])
    assert member[1] == e.sequence and (entry["k"], entry["key"], entry["received_ms"]) == (
        "e", "k0", 77)
    assert 0 < redis_client.ttl(timeline) <= settings.record_ttl_s
    # A save that is not a fold (update_record, the lifecycle sweep) adds no member.
    life.update_record(redis_client, SID, lambda r: r.update(note=1) is None,
                       source="test", settings=settings)
    assert redis_client.zcard(timeline) == 1


def test_the_sweep_fires_what_time_made_due_and_drops_expired_timers(
        redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # A process that knows every hook (a worker; none registered here): no publish.
    monkeypatch.setattr(hooks.STATE, "loaded", True)
    events = lifecycle("individual", SID, seed=5)
    cut = [e["eventType"] for e in events].index(41)
    t0 = 1_800_000_000_000
    for n, env in enumerate(events[:cut]):
        e = parse_event(encode(env))
        life.fold_event(redis_client, settings, SID, e, key=f"k{n}", late=False, gap=None,
                        now_ms=t0 + n)
    last = t0 + cut - 1
    stall_ms = settings.stall_after_s * 1000
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) == last + stall_ms
    assert life.sweep(redis_client, settings, last + stall_ms - 1) == 0
    assert life.sweep(redis_client, settings, last + stall_ms) == 1
    record = store.load(redis_client, SID)
    assert record is not None and "stalled" in record["lifecycle"]["fired"]
    assert record["lifecycle"]["pending"] == []
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) == last + 2 * stall_ms
    # A record that expired leaves a timer behind for one sweep at most.
    redis_client.delete(keys.recording_state(SID))
    assert life.sweep(redis_client, settings, last + 2 * stall_ms) == 1
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) is None


def test_a_huge_sequence_jump_keeps_the_missing_list_bounded() -> None:
    base = lifecycle("individual", SID, seed=6)[0]
    state = fold(None, parse_event(encode(base)))
    jump = {**base, "payload": {**base["payload"], "sequence": 2**52}}
    state = fold(state, parse_event(encode(jump)))
    assert len(state["sequences"]["missing"]) == MAX_ITEMS
    assert state["sequences"]["missing"][0] == 1


def test_lifecycle_settings() -> None:
    assert Settings.from_env({}).record_ttl_s == 604800
    assert Settings.from_env({"RECORDING_STATE_TTL_S": "60"}).record_ttl_s == 60
    assert Settings.from_env({"RECORDING_STATE_TTL_S": "60",
                              "RECORD_TTL_S": "90"}).record_ttl_s == 90
    with pytest.raises(ConfigError, match="RECORD_TTL_S"):
        Settings.from_env({"RECORD_TTL_S": "0"})
    with pytest.raises(ConfigError, match=r"SETTLE_S .* must be below STALL_AFTER_S"):
        Settings.from_env({"SETTLE_S": "300", "STALL_AFTER_S": "300"})


def test_a_process_without_the_hooks_leaves_phases_for_a_worker(
        redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI (``recording SID --reconcile``) loads no handler module: a phase it
    # decides stays pending, with the timer at one lease, for a worker's sweep.
    monkeypatch.setattr(hooks.STATE, "loaded", False)
    e = parse_event(encode(lifecycle("web", SID, seed=7)[1]))  # 70 web_recorder_started
    out = life.fold_event(redis_client, settings, SID, e, key="k1", late=False, gap=None,
                          now_ms=1000)
    assert out.fired == ["started"]
    record = store.load(redis_client, SID)
    assert record is not None and record["lifecycle"]["pending"] == ["started"]
    assert redis_client.zscore(keys.LIFECYCLE_TIMERS, SID) == 1000 + settings.dispatch_lease_ms
    # A worker (knows every hook; none for "started" here) clears it at its sweep.
    monkeypatch.setattr(hooks.STATE, "loaded", True)
    assert life.sweep(redis_client, settings, 1000 + settings.dispatch_lease_ms) == 1
    record = store.load(redis_client, SID)
    assert record is not None and record["lifecycle"]["pending"] == []
