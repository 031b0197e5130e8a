"""The ordering and dedupe scripts, against the real Redis, with a controlled clock."""

from __future__ import annotations

import pytest
import redis

from agora_callbacks import keys
from workers import scripts
from workers.ordering import (
    Ordering,
    Record,
    claim_notice,
    member_of,
    recording_keys,
    settle_entry,
)

HOLD = 1_000
LEASE = 5_000
DEADLINE = 60_000
T0 = 1_700_000_000_000
SID = "sid-a"

ORD = Ordering(ttl_s=86_400, hold_ms=HOLD, lease_ms=LEASE, deadline_ms=DEADLINE)


def rec(seq: int, handlers: tuple[str, ...] = ("h",), event_type: int = 40) -> Record:
    return Record(handlers=handlers, key=f"{SID}:{event_type}:{seq}", meta={"received_ms": 1},
                  entry_id=f"{seq}-0", body=b'{"seq":%d}' % seq)


def admit(client: redis.Redis, seq: int, now: int, *, entry: str | None = None,
          handlers: tuple[str, ...] = ("h",), event_type: int = 40, sid: str = SID):
    field = f"{event_type}:{seq}"
    return ORD.admit(client, sid, field, seq, entry or f"e{seq}-{event_type}",
                     rec(seq, handlers, event_type), now_ms=now)


def m(seq: int, event_type: int = 40) -> str:
    return member_of(seq, f"{event_type}:{seq}")


def finish(client: redis.Redis, seq: int, now: int, handlers=("h",), event_type: int = 40):
    return ORD.finish(client, SID, m(seq, event_type), handlers, now_ms=now)


def test_sequence_zero_is_dispatched_at_once(redis_client: redis.Redis) -> None:
    result = admit(redis_client, 0, T0)
    assert result.status == "admitted"
    assert result.turn is not None and result.turn.kind == "event"
    assert result.turn.member == m(0)
    assert result.turn.handlers == ("h",)
    assert result.turn.late is False and result.turn.gap is None
    assert result.turn.due_ms == T0 + LEASE
    assert result.turn.record == rec(0)


def test_next_event_waits_for_the_turn_to_finish(redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0)
    busy = admit(redis_client, 1, T0 + 1)
    assert busy.turn is not None and busy.turn.kind == "busy"
    assert busy.turn.due_ms == T0 + LEASE
    done = finish(redis_client, 0, T0 + 2)
    assert done.status == "next"
    assert done.turn is not None and done.turn.kind == "event" and done.turn.member == m(1)
    assert finish(redis_client, 1, T0 + 3).turn.kind == "none"  # type: ignore[union-attr]


def test_copies_are_dropped_and_a_redelivered_entry_is_idempotent(
        redis_client: redis.Redis) -> None:
    first = admit(redis_client, 0, T0, entry="1-0")
    assert first.status == "admitted"
    assert admit(redis_client, 0, T0 + 1, entry="2-0").status == "dup"
    again = admit(redis_client, 0, T0 + 2, entry="1-0")
    assert again.status == "again"
    assert again.turn is not None and again.turn.kind == "busy"
    finish(redis_client, 0, T0 + 3)
    assert admit(redis_client, 0, T0 + 4, entry="3-0").status == "dup"
    assert redis_client.zcard(keys.recording_buffer(SID)) == 0


def test_shuffled_arrival_inside_the_hold_window_is_put_in_order(
        redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0)
    finish(redis_client, 0, T0 + 1)
    wait = admit(redis_client, 2, T0 + 10)
    assert wait.turn is not None and wait.turn.kind == "wait"
    assert wait.turn.due_ms == T0 + 10 + HOLD
    got = admit(redis_client, 1, T0 + 20)
    assert got.turn is not None and got.turn.kind == "event" and got.turn.member == m(1)
    nxt = finish(redis_client, 1, T0 + 30).turn
    assert nxt is not None and nxt.member == m(2) and nxt.gap is None and not nxt.late


def test_gap_is_skipped_after_the_hold_and_the_missing_event_comes_late(
        redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0)
    finish(redis_client, 0, T0 + 1)
    assert admit(redis_client, 3, T0 + 100).turn.kind == "wait"  # type: ignore[union-attr]
    early = ORD.take(redis_client, SID, now_ms=T0 + 100 + HOLD - 1)
    assert early.kind == "wait" and early.due_ms == T0 + 100 + HOLD
    skipped = ORD.take(redis_client, SID, now_ms=T0 + 100 + HOLD)
    assert skipped.kind == "event" and skipped.member == m(3)
    assert skipped.gap == (1, 2) and not skipped.late
    assert finish(redis_client, 3, T0 + 2000).turn.kind == "none"  # type: ignore[union-attr]
    late = admit(redis_client, 1, T0 + 3000)
    assert late.turn is not None and late.turn.kind == "event"
    assert late.turn.member == m(1) and late.turn.late and late.turn.gap is None
    finish(redis_client, 1, T0 + 3001)
    after = admit(redis_client, 4, T0 + 3002)
    assert after.turn is not None and after.turn.member == m(4) and not after.turn.late


def test_a_recording_seen_from_the_middle_starts_at_the_lowest_sequence_after_the_hold(
        redis_client: redis.Redis) -> None:
    first = admit(redis_client, 7, T0)
    assert first.turn is not None and first.turn.kind == "wait"
    assert first.turn.due_ms == T0 + HOLD
    assert admit(redis_client, 5, T0 + 500).turn.due_ms == T0 + HOLD  # type: ignore[union-attr]
    start = ORD.take(redis_client, SID, now_ms=T0 + HOLD)
    assert start.kind == "event" and start.member == m(5) and start.gap is None
    assert finish(redis_client, 5, T0 + HOLD + 1).turn.kind == "wait"  # type: ignore[union-attr]
    late = admit(redis_client, 3, T0 + HOLD + 2)
    assert late.turn is not None and late.turn.member == m(3) and late.turn.late


def test_same_sequence_with_another_event_type_is_in_order(redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0)
    admit(redis_client, 0, T0 + 1, event_type=41)
    nxt = finish(redis_client, 0, T0 + 2).turn
    assert nxt is not None and nxt.member == m(0, 41) and not nxt.late


def test_events_without_handlers_end_their_turn_at_once(redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0)
    admit(redis_client, 1, T0 + 1, handlers=())
    admit(redis_client, 2, T0 + 2, handlers=())
    admit(redis_client, 3, T0 + 3)
    nxt = finish(redis_client, 0, T0 + 4).turn
    assert nxt is not None and nxt.member == m(3) and nxt.skipped == 2
    assert redis_client.hlen(keys.recording_events(SID)) == 1


def test_every_handler_of_a_turn_must_finish(redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0, handlers=("a", "b"))
    admit(redis_client, 1, T0 + 1, handlers=("a", "b"))
    assert finish(redis_client, 0, T0 + 2, handlers=("a",)).status == "pending"
    assert finish(redis_client, 0, T0 + 3, handlers=("a",)).status == "stale"
    done = finish(redis_client, 0, T0 + 4, handlers=("b",))
    assert done.status == "next" and done.turn is not None
    assert done.turn.member == m(1) and done.turn.handlers == ("a", "b")
    assert finish(redis_client, 0, T0 + 5, handlers=("b",)).status == "stale"


def test_a_dispatcher_that_died_while_taking_is_replaced_after_the_lease(
        redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0, handlers=("a", "b"))
    assert finish(redis_client, 0, T0 + 1, handlers=("a",)).status == "pending"
    assert ORD.take(redis_client, SID, now_ms=T0 + LEASE - 1).kind == "busy"
    again = ORD.take(redis_client, SID, now_ms=T0 + LEASE)
    assert again.kind == "event" and again.member == m(0) and again.handlers == ("b",)
    assert again.due_ms == T0 + 2 * LEASE


def test_commit_then_lost_handlers_are_reported_and_the_turn_moves_on(
        redis_client: redis.Redis) -> None:
    token = admit(redis_client, 0, T0).turn.token  # type: ignore[union-attr]
    admit(redis_client, 1, T0 + 1)
    assert ORD.commit(redis_client, SID, m(0), token, now_ms=T0 + 2) == T0 + 2 + DEADLINE
    assert ORD.commit(redis_client, SID, m(0), token, now_ms=T0 + 3) == 0  # not taking any more
    assert ORD.take(redis_client, SID, now_ms=T0 + 2 + LEASE).kind == "busy"
    lost = ORD.take(redis_client, SID, now_ms=T0 + 2 + DEADLINE)
    assert lost.kind == "lost" and lost.member == m(0) and lost.handlers == ("h",)
    assert lost.record == rec(0)
    nxt = ORD.finish(redis_client, SID, m(0), lost.handlers, now_ms=T0 + 3 + DEADLINE).turn
    assert nxt is not None and nxt.kind == "event" and nxt.member == m(1)


def test_only_the_latest_take_of_a_lost_turn_dead_letters_it_and_ends_it(
        redis_client: redis.Redis) -> None:
    from agora_callbacks import deadletters

    token = admit(redis_client, 0, T0, handlers=("a", "b", "c")).turn.token  # type: ignore[union-attr]
    admit(redis_client, 1, T0 + 1)
    ORD.commit(redis_client, SID, m(0), token, now_ms=T0 + 2)
    first = ORD.take(redis_client, SID, now_ms=T0 + 2 + DEADLINE)
    assert first.kind == "lost" and first.token > token
    assert finish(redis_client, 0, T0 + 3 + DEADLINE, handlers=("b",)).status == "pending"
    again = ORD.take(redis_client, SID, now_ms=T0 + 2 + DEADLINE + LEASE)
    assert again.kind == "lost" and again.token > first.token
    fields = deadletters.entry_fields(kind="handler", reason="lost", detail="d", body=b"raw",
                                      meta={"x": 1}, key="k", handler="ignored", now_ms=7)

    def lost(turn_token: int):
        return ORD.lost(redis_client, SID, m(0), turn_token, 100, fields,
                        now_ms=T0 + 3 + DEADLINE + LEASE)

    stale = lost(first.token)  # superseded by the second take: nothing written
    assert stale.status == "stale" and stale.turn is None
    assert deadletters.count(redis_client) == 0
    assert redis_client.hget(keys.recording_order(SID), "cur") == m(0).encode()
    done = lost(again.token)
    assert done.status == "next" and done.handlers == ("a", "c")  # b reported meanwhile
    assert done.turn is not None and done.turn.kind == "event" and done.turn.member == m(1)
    letters = deadletters.list_(redis_client)
    assert [(d.handler, d.reason, d.key, d.body, d.meta, d.at_ms) for d in letters] == [
        ("a", "lost", "k", b"raw", {"x": 1}, 7), ("c", "lost", "k", b"raw", {"x": 1}, 7)]
    assert redis_client.hget(keys.COUNTERS, "deadletters_handler") == b"2"
    assert lost(again.token).status == "stale"  # once
    assert deadletters.count(redis_client) == 2


def test_only_the_latest_take_of_a_turn_commits_and_pushes_its_messages(
        redis_client: redis.Redis) -> None:
    first = admit(redis_client, 0, T0).turn
    assert first is not None and first.kind == "event" and first.token > 0
    # The first taker is delayed past its lease: the turn is taken again.
    again = ORD.take(redis_client, SID, now_ms=T0 + LEASE)
    assert again.kind == "event" and again.member == m(0) and again.token > first.token
    # The late commit of the first take is refused and pushes nothing.
    assert ORD.commit(redis_client, SID, m(0), first.token, [("lpush", "q", "first")],
                      now_ms=T0 + LEASE + 1) == 0
    assert redis_client.lrange("q", 0, -1) == []
    assert redis_client.hget(keys.recording_order(SID), "state") == b"taking"
    # The second take's commit pushes its messages, once.
    pushes = [("lpush", "q", "second"), ("pexpire", "q", 60_000)]
    assert ORD.commit(redis_client, SID, m(0), again.token, pushes,
                      now_ms=T0 + LEASE + 2) == T0 + LEASE + 2 + DEADLINE
    assert ORD.commit(redis_client, SID, m(0), again.token, pushes,
                      now_ms=T0 + LEASE + 3) == 0
    assert redis_client.lrange("q", 0, -1) == [b"second"]
    assert 0 < redis_client.pttl("q") <= 60_000
    # A commit within the lease, nobody else having taken the turn: accepted,
    # however late (the token, not the clock, decides).
    admit(redis_client, 1, T0 + LEASE + 4)
    nxt = finish(redis_client, 0, T0 + LEASE + 5).turn
    assert nxt is not None and nxt.member == m(1) and nxt.token > again.token
    assert ORD.commit(redis_client, SID, m(1), nxt.token, [("lpush", "q", "next")],
                      now_ms=T0 + 10 * LEASE) == T0 + 10 * LEASE + DEADLINE
    assert redis_client.lrange("q", 0, -1) == [b"next", b"second"]


def test_a_commit_with_a_command_it_cannot_send_pushes_nothing(
        redis_client: redis.Redis) -> None:
    turn = admit(redis_client, 0, T0).turn
    assert turn is not None
    with pytest.raises(redis.ResponseError, match="unsupported command"):
        ORD.commit(redis_client, SID, m(0), turn.token,
                   [("lpush", "q", "a"), ("del", "other", "x")], now_ms=T0 + 1)
    assert redis_client.lrange("q", 0, -1) == []
    assert redis_client.hget(keys.recording_order(SID), "state") == b"taking"


def test_start_allows_a_pending_handler_once_and_extends_the_deadline(
        redis_client: redis.Redis) -> None:
    token = admit(redis_client, 0, T0, handlers=("a", "b")).turn.token  # type: ignore[union-attr]
    ORD.commit(redis_client, SID, m(0), token, now_ms=T0)
    assert ORD.start(redis_client, SID, m(0), "a", now_ms=T0 + 1000)
    assert int(redis_client.hget(keys.recording_order(SID), "lease") or 0) == T0 + 1000 + DEADLINE
    finish(redis_client, 0, T0 + 1001, handlers=("a",))
    assert not ORD.start(redis_client, SID, m(0), "a", now_ms=T0 + 1002)
    assert ORD.start(redis_client, SID, m(0), "b", now_ms=T0 + 1003)
    assert not ORD.start(redis_client, SID, m(1), "b", now_ms=T0 + 1004)


def test_every_key_of_a_recording_has_a_ttl(redis_client: redis.Redis) -> None:
    admit(redis_client, 0, T0, handlers=("a", "b"))
    admit(redis_client, 2, T0 + 1)
    admit(redis_client, 1, T0 + 1)
    present = [k for k in recording_keys(SID) if redis_client.exists(k)]
    assert len(present) == 5
    for key in present:
        assert 0 < redis_client.ttl(key) <= 86_400
    assert all("{" + SID + "}" in k for k in recording_keys(SID))


def test_recordings_are_independent(redis_client: redis.Redis) -> None:
    assert admit(redis_client, 0, T0, sid="x").turn.kind == "event"  # type: ignore[union-attr]
    assert admit(redis_client, 0, T0, sid="y").turn.kind == "event"  # type: ignore[union-attr]


def test_notice_claim(redis_client: redis.Redis) -> None:
    def claim(entry: str) -> bytes:
        return scripts.run(redis_client, [lambda p: claim_notice(p, "n1", entry, 60)])[0]

    assert claim("1-0") == b"new"
    assert claim("1-0") == b"again"
    assert claim("2-0") == b"dup"
    assert 0 < redis_client.ttl(keys.notice_dedupe("n1")) <= 60


def test_an_unordered_entry_is_settled_only_by_the_consumer_that_owns_it(
        redis_client: redis.Redis) -> None:
    redis_client.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
    entry = redis_client.xadd(keys.INBOX, {"b": "x"}).decode()
    redis_client.xreadgroup(keys.INBOX_GROUP, "a", {keys.INBOX: ">"})

    def settle(consumer: str, pushes=(("lpush", "q", "m"),)) -> object:
        return scripts.run(redis_client, [lambda p: settle_entry(
            p, consumer, entry, pushes, {"admitted": 1, "dispatched": 1, "none": 0})])[0]

    def untouched() -> bool:
        return (redis_client.llen("q") == 0 and not redis_client.exists(keys.COUNTERS)
                and redis_client.xlen(keys.INBOX) == 1)

    assert settle("b") == 0 and untouched()  # not b's entry
    with pytest.raises(redis.ResponseError, match="unsupported command"):
        result = settle("a", (("lpush", "q", "m"), ("del", "q2", "x")))
        if isinstance(result, Exception):
            raise result
    assert untouched()
    redis_client.xclaim(keys.INBOX, keys.INBOX_GROUP, "b", 0, [entry])  # taken over
    assert settle("a") == 0 and untouched()
    assert settle("b") == 1
    assert redis_client.lrange("q", 0, -1) == [b"m"]
    assert redis_client.hgetall(keys.COUNTERS) == {b"admitted": b"1", b"dispatched": b"1"}
    assert redis_client.xlen(keys.INBOX) == 0
    assert redis_client.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0
    assert settle("b") == 0 and redis_client.llen("q") == 1  # settled once


def test_scripts_are_reloaded_after_a_flush(redis_client: redis.Redis) -> None:
    redis_client.script_flush()
    assert admit(redis_client, 0, T0).status == "admitted"


def test_the_sweep_does_not_undo_a_timer_moved_meanwhile(redis_client: redis.Redis) -> None:
    from workers.timers import q_timer_set

    redis_client.zadd(keys.TIMERS, {"s": 1000})
    # Someone moved it earlier after the sweep read 1000: the sweep leaves it.
    redis_client.zadd(keys.TIMERS, {"s": 900}, lt=True)
    scripts.run(redis_client, [lambda p: q_timer_set(p, "s", 1000, 5000)])
    assert redis_client.zscore(keys.TIMERS, "s") == 900
    scripts.run(redis_client, [lambda p: q_timer_set(p, "s", 900, 5000)])
    assert redis_client.zscore(keys.TIMERS, "s") == 5000
    scripts.run(redis_client, [lambda p: q_timer_set(p, "s", 5000, 0)])
    assert redis_client.zscore(keys.TIMERS, "s") is None


def test_a_commit_within_its_lease_moves_the_timer_to_the_deadline(
        redis_client: redis.Redis) -> None:
    from workers.dispatch import q_timer_commit

    lease = T0 + LEASE
    redis_client.zadd(keys.TIMERS, {"s": T0 + 10})
    # Committed before the lease ran out: only the handler deadline is due.
    scripts.run(redis_client, [lambda p: q_timer_commit(p, "s", lease, DEADLINE, T0 + 1)])
    assert redis_client.zscore(keys.TIMERS, "s") == T0 + 1 + DEADLINE
    # The lease had run out (the commit may have failed): no later than the lease.
    scripts.run(redis_client, [lambda p: q_timer_commit(p, "s", lease, DEADLINE, lease)])
    assert redis_client.zscore(keys.TIMERS, "s") == lease
    scripts.run(redis_client, [lambda p: q_timer_commit(p, "s", lease, DEADLINE, lease + 5)])
    assert redis_client.zscore(keys.TIMERS, "s") == lease
    redis_client.zadd(keys.TIMERS, {"s": lease - 3})
    scripts.run(redis_client, [lambda p: q_timer_commit(p, "s", lease, DEADLINE, lease + 5)])
    assert redis_client.zscore(keys.TIMERS, "s") == lease - 3
