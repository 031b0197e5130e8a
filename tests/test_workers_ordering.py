"""The ordering and dedupe scripts (``workers/ordering``), against the real Redis,
under a clock the test drives. After every per-recording script, the recording's
timer must be exactly the due time of the state the script left (PROTOCOL.md)."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from workers_support import VirtualClock, assert_timer, pending_entry, timer_of

from agora_callbacks import deadletters, keys
from agora_callbacks.workers.ordering import (
    Admitted,
    Failure,
    Finished,
    Ordering,
    Record,
    Turn,
    member_of,
    q_settle_entry,
    recording_keys,
    scripts,
)

HOLD = 1_000
LEASE = 5_000
DEADLINE = 60_000
T0 = 1_700_000_000_000
SID = "sid-a"


def rec(seq: int, handlers: tuple[str, ...] = ("h",), event_type: int = 40,
        sid: str = SID) -> Record:
    return Record(handlers=handlers, key=f"{sid}:{event_type}:{seq}", meta={"received_ms": 1},
                  entry_id=f"{seq}-0", body=b'{"seq":%d}' % seq)


def m(seq: int, event_type: int = 40) -> str:
    return member_of(seq, f"{event_type}:{seq}")


class Rec:
    """One recording driven through the scripts; checks its timer after each step."""

    def __init__(self, client: redis.Redis, clock: VirtualClock, ordering: Ordering,
                 sid: str = SID) -> None:
        self.client, self.clock, self.ordering, self.sid = client, clock, ordering, sid

    def _at(self, at: int | None) -> None:
        if at is not None:
            self.clock.ms = at

    def check(self) -> int | None:
        return assert_timer(self.client, self.sid, self.ordering.hold_ms)

    def admit(self, seq: int, at: int | None = None, *, entry: str | None = None,
              handlers: tuple[str, ...] = ("h",), event_type: int = 40) -> Admitted:
        self._at(at)
        entry = entry or pending_entry(self.client)
        result = self.ordering.admit(self.client, self.sid, f"{event_type}:{seq}", seq, entry,
                                     rec(seq, handlers, event_type, self.sid))
        assert self.check() == (result.turn.due_ms or None)
        return result

    def take(self, at: int | None = None) -> Turn:
        self._at(at)
        turn = self.ordering.take(self.client, self.sid)
        assert self.check() == (turn.due_ms or None)
        return turn

    def start(self, seq: int, handler: str = "h", task: str = "t1", at: int | None = None,
              event_type: int = 40) -> bool:
        self._at(at)
        ok = self.ordering.start(self.client, self.sid, m(seq, event_type), handler, task)
        self.check()
        return ok

    def finish(self, seq: int, handler: str = "h", task: str = "t1", at: int | None = None,
               event_type: int = 40, failure: Failure | None = None) -> Finished:
        self._at(at)
        done = self.ordering.finish(self.client, self.sid, m(seq, event_type), handler, task,
                                    failure)
        due = self.check()
        if done.turn is not None:
            assert due == (done.turn.due_ms or None)
        return done

    def run(self, seq: int, at: int | None = None, handlers: tuple[str, ...] = ("h",),
            event_type: int = 40) -> Finished:
        """Start and finish each handler (task id ``<handler>-task``); the last finish."""
        self._at(at)
        done: Finished | None = None
        for name in handlers:
            assert self.start(seq, name, f"{name}-task", event_type=event_type)
            done = self.finish(seq, name, f"{name}-task", event_type=event_type)
        assert done is not None
        return done


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(T0)


@pytest.fixture
def ordering(clock: VirtualClock) -> Ordering:
    return Ordering(ttl_s=86_400, hold_ms=HOLD, lease_ms=LEASE, deadline_ms=DEADLINE,
                    clock=clock)


@pytest.fixture
def r(redis_client: redis.Redis, clock: VirtualClock, ordering: Ordering) -> Rec:
    return Rec(redis_client, clock, ordering)


def counters(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(keys.COUNTERS).items()}


def no_inbox_left(client: redis.Redis) -> bool:
    return (client.xlen(keys.INBOX) == 0
            and client.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0)


# -- order ------------------------------------------------------------------------------
def test_sequence_zero_is_dispatched_at_once(r: Rec, redis_client: redis.Redis) -> None:
    result = r.admit(0, T0)
    assert result.status == "admitted"
    turn = result.turn
    assert turn.kind == "event" and turn.member == m(0) and turn.handlers == ("h",)
    assert turn.late is False and turn.gap is None and turn.republished is False
    assert turn.due_ms == T0 + LEASE and timer_of(redis_client, SID) == T0 + LEASE
    assert turn.record == rec(0)
    assert redis_client.hget(keys.recording_turn(SID), "h") == b"-|%d" % (T0 + DEADLINE)
    assert counters(redis_client) == {"admitted": 1, "dispatched": 1}
    assert no_inbox_left(redis_client)


def test_next_event_waits_for_the_turn_to_finish(r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0)
    busy = r.admit(1, T0 + 1)
    assert busy.turn.kind == "busy" and busy.turn.due_ms == T0 + LEASE
    assert r.start(0, at=T0 + 2)
    assert timer_of(redis_client, SID) == T0 + 2 + DEADLINE  # started: only its deadline
    done = r.finish(0, at=T0 + 3)
    assert done.status == "next" and done.turn is not None
    assert done.turn.kind == "event" and done.turn.member == m(1)
    assert done.turn.due_ms == T0 + 3 + LEASE
    last = r.run(1, at=T0 + 4)
    assert last.turn is not None and last.turn.kind == "none" and last.turn.due_ms == 0
    assert timer_of(redis_client, SID) is None
    assert not redis_client.exists(keys.recording_events(SID), keys.recording_buffer(SID),
                                   keys.recording_turn(SID), keys.recording_arrivals(SID))


def test_copies_are_dropped_and_a_redelivered_entry_is_idempotent(
        r: Rec, redis_client: redis.Redis) -> None:
    e1 = pending_entry(redis_client)
    assert r.admit(0, T0, entry=e1).status == "admitted"
    e2 = pending_entry(redis_client)
    dup = r.admit(0, T0 + 1, entry=e2)
    assert dup.status == "dup" and dup.turn.kind == "busy"
    again = r.admit(0, T0 + 2, entry=e1)  # redelivered (already acknowledged: not counted)
    assert again.status == "again" and again.turn.kind == "busy"
    assert redis_client.zcard(keys.recording_buffer(SID)) == 0
    assert redis_client.hlen(keys.recording_events(SID)) == 1
    r.run(0, at=T0 + 3)
    assert r.admit(0, T0 + 4).status == "dup"
    assert r.admit(0, T0 + 5, entry=e2).status == "dup"  # acknowledged before: not counted
    assert redis_client.zcard(keys.recording_buffer(SID)) == 0
    assert counters(redis_client) == {"admitted": 1, "dispatched": 1, "duplicates": 2}
    assert no_inbox_left(redis_client)


def test_an_entry_taken_over_is_admitted_once_and_counted_once(
        r: Rec, redis_client: redis.Redis) -> None:
    # Two consumers run admit for the same entry (the first was delayed past
    # CLAIM_IDLE_MS): "again" for the second, counted by the one that acknowledged.
    entry = pending_entry(redis_client, consumer="slow")
    redis_client.xclaim(keys.INBOX, keys.INBOX_GROUP, "taker", 0, [entry])
    assert r.admit(0, T0, entry=entry).status == "admitted"
    assert r.admit(0, T0 + 1, entry=entry).status == "again"
    assert counters(redis_client) == {"admitted": 1, "dispatched": 1}
    assert no_inbox_left(redis_client)


def test_shuffled_arrival_inside_the_hold_window_is_put_in_order(r: Rec) -> None:
    r.admit(0, T0)
    r.run(0, at=T0 + 1)
    wait = r.admit(2, T0 + 10)
    assert wait.turn.kind == "wait" and wait.turn.due_ms == T0 + 10 + HOLD
    got = r.admit(1, T0 + 20)
    assert got.turn.kind == "event" and got.turn.member == m(1)
    nxt = r.run(1, at=T0 + 30).turn
    assert nxt is not None and nxt.member == m(2) and nxt.gap is None and not nxt.late


def test_gap_is_skipped_after_the_hold_and_the_missing_event_comes_late(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0)
    r.run(0, at=T0 + 1)
    assert r.admit(3, T0 + 100).turn.kind == "wait"
    early = r.take(T0 + 100 + HOLD - 1)
    assert early.kind == "wait" and early.due_ms == T0 + 100 + HOLD
    skipped = r.take(T0 + 100 + HOLD)
    assert skipped.kind == "event" and skipped.member == m(3)
    assert skipped.gap == (1, 2) and not skipped.late
    assert r.run(3, at=T0 + 2000).turn.kind == "none"  # type: ignore[union-attr]
    late = r.admit(1, T0 + 3000)
    assert late.turn.kind == "event" and late.turn.member == m(1)
    assert late.turn.late and late.turn.gap is None
    r.run(1, at=T0 + 3001)
    after = r.admit(4, T0 + 3002)
    assert after.turn.member == m(4) and not after.turn.late and after.turn.gap is None
    c = counters(redis_client)
    assert (c["gaps"], c["late"], c["dispatched"]) == (2, 1, 4)


def test_a_recording_seen_from_the_middle_starts_at_the_lowest_sequence_after_the_hold(
        r: Rec, redis_client: redis.Redis) -> None:
    first = r.admit(7, T0)
    assert first.turn.kind == "wait" and first.turn.due_ms == T0 + HOLD
    assert r.admit(5, T0 + 500).turn.due_ms == T0 + HOLD
    assert r.take(T0 + HOLD - 1).kind == "wait"
    start = r.take(T0 + HOLD)
    assert start.kind == "event" and start.member == m(5) and start.gap is None
    assert redis_client.hget(keys.recording_order(SID), "first") == b"5"
    # 6 is missing: 7 arrived at T0, it has waited its hold already.
    nxt = r.run(5, at=T0 + HOLD + 1).turn
    assert nxt is not None and nxt.kind == "event" and nxt.member == m(7) and nxt.gap == (6, 6)
    r.run(7, at=T0 + HOLD + 2)
    late = r.admit(3, T0 + HOLD + 3)
    assert late.turn.member == m(3) and late.turn.late
    assert "gaps" in counters(redis_client)  # the 6, not the start


def test_sequence_zero_starts_a_recording_without_a_hold_even_after_later_ones(
        r: Rec) -> None:
    assert r.admit(2, T0).turn.kind == "wait"
    zero = r.admit(0, T0 + 1)
    assert zero.turn.kind == "event" and zero.turn.member == m(0)


def test_same_sequence_with_another_event_type_is_in_order(r: Rec) -> None:
    r.admit(0, T0)
    r.admit(0, T0 + 1, event_type=41)
    nxt = r.run(0, at=T0 + 2).turn
    assert nxt is not None and nxt.member == m(0, 41) and not nxt.late and nxt.gap is None


def test_events_without_handlers_end_their_turn_at_once(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0)
    assert r.admit(1, T0 + 1, handlers=()).turn.kind == "busy"
    r.admit(2, T0 + 2, handlers=())
    r.admit(3, T0 + 3)
    nxt = r.run(0, at=T0 + 4).turn
    assert nxt is not None and nxt.member == m(3)
    assert redis_client.hlen(keys.recording_events(SID)) == 1
    assert counters(redis_client)["no_handler"] == 2
    r.run(3, at=T0 + 5)
    assert r.admit(4, T0 + 6, handlers=()).turn.kind == "none"
    assert counters(redis_client)["no_handler"] == 3
    assert counters(redis_client)["dispatched"] == 2


def test_every_handler_of_a_turn_must_finish(r: Rec) -> None:
    r.admit(0, T0, handlers=("a", "b"))
    r.admit(1, T0 + 1, handlers=("a", "b"))
    assert r.start(0, "a", "ta", at=T0 + 2) and r.start(0, "b", "tb", at=T0 + 2)
    assert r.finish(0, "a", "ta", at=T0 + 3).status == "pending"
    assert r.finish(0, "a", "ta", at=T0 + 4).status == "stale"
    done = r.finish(0, "b", "tb", at=T0 + 5)
    assert done.status == "next" and done.turn is not None
    assert done.turn.member == m(1) and done.turn.handlers == ("a", "b")
    assert r.finish(0, "b", "tb", at=T0 + 6).status == "stale"


# -- the start fence --------------------------------------------------------------------
def test_the_first_task_that_starts_a_handler_owns_it(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0, handlers=("a", "b"))
    r.admit(1, T0 + 1)
    assert r.start(0, "a", "copy-1", at=T0 + 10)
    assert redis_client.hget(keys.recording_turn(SID), "a") == b"copy-1|%d" % (
        T0 + 10 + DEADLINE)
    # Another copy (published again, or late): skipped.
    assert not r.start(0, "a", "copy-2", at=T0 + 20)
    # The same task again (a Celery retry, a redelivery): runs, deadline pushed.
    assert r.start(0, "a", "copy-1", at=T0 + 30)
    assert redis_client.hget(keys.recording_turn(SID), "a") == b"copy-1|%d" % (
        T0 + 30 + DEADLINE)
    # Only the owner finishes it; an unstarted handler is finished by nobody.
    assert r.finish(0, "a", "copy-2", at=T0 + 40).status == "stale"
    assert r.finish(0, "b", "anyone", at=T0 + 40).status == "stale"
    assert r.finish(0, "a", "copy-1", at=T0 + 50).status == "pending"
    # After the finish, no copy starts again, not even the same task.
    assert not r.start(0, "a", "copy-2", at=T0 + 60)
    assert not r.start(0, "a", "copy-1", at=T0 + 60)
    # Not the current event: skipped.
    assert not r.start(1, "h", "t", at=T0 + 61)
    assert r.start(0, "b", "tb", at=T0 + 70)
    nxt = r.finish(0, "b", "tb", at=T0 + 80).turn
    assert nxt is not None and nxt.member == m(1)
    assert not r.start(0, "b", "tb", at=T0 + 90)  # the turn is over


def test_unstarted_handlers_are_published_again_after_the_lease_with_backoff(
        redis_client: redis.Redis, clock: VirtualClock) -> None:
    long = Ordering(ttl_s=86_400, hold_ms=HOLD, lease_ms=LEASE, deadline_ms=1000 * LEASE,
                    clock=clock)
    r = Rec(redis_client, clock, long)
    first = r.admit(0, T0, handlers=("a", "b")).turn
    assert first.due_ms == T0 + LEASE
    assert r.start(0, "a", "ta", at=T0 + 1)
    assert timer_of(redis_client, SID) == T0 + LEASE  # b has not started
    assert r.take(T0 + LEASE - 1).kind == "busy"
    at = T0 + LEASE
    for factor in (2, 4, 8, 16, 32, 32):
        again = r.take(at)
        assert again.kind == "event" and again.republished
        assert again.member == m(0) and again.handlers == ("b",)  # only the unstarted one
        assert again.record == rec(0, ("a", "b"))
        assert again.due_ms == at + factor * LEASE
        assert r.take(again.due_ms - 1).kind == "busy"
        at = again.due_ms
    c = counters(redis_client)
    assert c["republished"] == 6 and c["dispatched"] == 1
    # A copy of b starts: nothing is published again; its deadline is due.
    assert r.start(0, "b", "tb", at=at)
    busy = r.take(at + 1)
    assert busy.kind == "busy" and busy.due_ms == T0 + 1 + 1000 * LEASE  # a's deadline


def test_the_lease_is_not_due_once_every_handler_started(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0)
    assert r.start(0, at=T0 + 1)
    busy = r.take(T0 + LEASE)
    assert busy.kind == "busy" and busy.due_ms == T0 + 1 + DEADLINE
    assert counters(redis_client).get("republished") is None


# -- lost handlers and failures -----------------------------------------------------------
def test_a_handler_never_started_by_its_deadline_is_lost_and_the_turn_moves_on(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0, handlers=("a", "b"))
    r.admit(1, T0 + 1)
    assert r.start(0, "a", "ta", at=T0 + 2)
    assert r.finish(0, "a", "ta", at=T0 + 3).status == "pending"
    lost = r.take(T0 + DEADLINE)
    assert lost.kind == "event" and lost.member == m(1) and not lost.republished
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.key, d.body, d.meta, d.at_ms) for d in letters] == [
        ("handler", "lost", "b", f"{SID}:40:0", b'{"seq":0}', {"received_ms": 1},
         T0 + DEADLINE)]
    assert "never started" in letters[0].detail
    assert counters(redis_client)["deadletters_handler"] == 1
    # Once: a late copy neither starts nor finishes it; taking again writes nothing.
    assert not r.start(0, "b", "tb", at=T0 + DEADLINE + 1)
    assert r.finish(0, "b", "tb", at=T0 + DEADLINE + 2).status == "stale"
    assert r.take(T0 + DEADLINE + 3).kind == "busy"
    assert deadletters.count(redis_client) == 1


def test_a_handler_that_never_reports_is_lost_at_its_deadline(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0)
    assert r.start(0, "h", "t", at=T0 + 1000)
    assert r.take(T0 + DEADLINE).kind == "busy"  # its start pushed the deadline
    none = r.take(T0 + 1000 + DEADLINE)
    assert none.kind == "none" and timer_of(redis_client, SID) is None
    letters = deadletters.list_(redis_client)
    assert [(d.reason, d.handler) for d in letters] == [("lost", "h")]
    assert "no report" in letters[0].detail
    assert letters[0].extra == {"sid": SID, "member": m(0)}
    assert r.finish(0, "h", "t", at=T0 + 1001 + DEADLINE).status == "stale"
    assert deadletters.count(redis_client) == 1


def test_a_final_failure_is_dead_lettered_once_by_finish(
        r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0, handlers=("a", "b"))
    assert r.start(0, "a", "ta", at=T0 + 1)
    failure = Failure(reason="handler_failed", detail="Traceback ...",
                      exception="ValueError: boom")
    assert r.finish(0, "a", "ta", at=T0 + 2, failure=failure).status == "pending"
    assert r.finish(0, "a", "ta", at=T0 + 3, failure=failure).status == "stale"
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.exception, d.detail, d.key, d.body, d.at_ms)
            for d in letters] == [("handler", "handler_failed", "a", "ValueError: boom",
                                   "Traceback ...", f"{SID}:40:0", b'{"seq":0}', T0 + 2)]
    assert counters(redis_client)["deadletters_handler"] == 1


# -- keys, recordings, scripts -------------------------------------------------------------
def test_every_key_of_a_recording_has_a_ttl(r: Rec, redis_client: redis.Redis) -> None:
    r.admit(0, T0, handlers=("a", "b"))
    r.admit(2, T0 + 1)
    present = [k for k in recording_keys(SID)[:6] if redis_client.exists(k)]
    assert len(present) == 6
    for key in present:
        assert 0 < redis_client.ttl(key) <= 86_400
    assert all("{" + SID + "}" in k for k in recording_keys(SID)[:6])


def test_recordings_are_independent(redis_client: redis.Redis, clock: VirtualClock,
                                    ordering: Ordering) -> None:
    x, y = Rec(redis_client, clock, ordering, "x"), Rec(redis_client, clock, ordering, "y")
    assert x.admit(0, T0).turn.kind == "event"
    assert y.admit(0, T0).turn.kind == "event"
    assert x.admit(1, T0 + 1).turn.kind == "busy"
    x.run(0, at=T0 + 2)
    assert timer_of(redis_client, "y") == T0 + LEASE


def test_handler_names_that_would_break_a_record_are_refused() -> None:
    for name in ("a,b", "a|b", "a\nb"):
        with pytest.raises(ValueError):
            rec(0, (name,)).encode()


def test_scripts_are_reloaded_after_a_flush(r: Rec, redis_client: redis.Redis) -> None:
    redis_client.script_flush()
    assert r.admit(0, T0).status == "admitted"
    redis_client.script_flush()
    # In a batch, only the calls that met NOSCRIPT run again (each once).
    calls: list[Any] = [lambda p: p.hincrby("n", "x", 1),
                        lambda p: r.ordering.q_take(p, SID),
                        lambda p: p.hincrby("n", "x", 1)]
    results = scripts.run(redis_client, calls)
    assert results[0] == 1 and results[2] == 2
    assert results[1][0] == b"busy"
    assert redis_client.hget("n", "x") == b"2"


# -- inbox entries without a turn ------------------------------------------------------------------
def test_an_entry_is_settled_once_with_its_counts_and_dead_letter(
        redis_client: redis.Redis) -> None:
    entry = pending_entry(redis_client, consumer="a")
    redis_client.xclaim(keys.INBOX, keys.INBOX_GROUP, "b", 0, [entry])  # taken over
    letter = deadletters.entry_fields(kind="body", reason="invalid_json", detail="d",
                                      body=b"{", meta={}, now_ms=7)

    def settle() -> int:
        return int(scripts.run(redis_client, [lambda p: q_settle_entry(
            p, entry, {"invalid": 1, "none": 0}, letter, 100)])[0])

    assert settle() == 1
    assert settle() == 0  # the other consumer, late: nothing written
    assert counters(redis_client) == {"invalid": 1}
    assert [(d.reason, d.body, d.at_ms) for d in deadletters.list_(redis_client)] == [
        ("invalid_json", b"{", 7)]
    assert no_inbox_left(redis_client)
