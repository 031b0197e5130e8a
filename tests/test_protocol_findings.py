"""Regression tests of the findings that led to the protocol of commit 45f557c (fenced
starts, every script setting its recording's timer). Each one failed on the
previous protocol (commit 91a20d2; how is said in each test's docstring).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from conftest import wait_for
from test_workers_intake import EVERY, HOLD_MS, LEASE_MS, World, build, counter, inbox_empty
from workers_support import (
    VirtualClock,
    assert_timer,
    await_answering,
    body,
    pause_all,
    store,
    timer_of,
)

from agora_callbacks import deadletters, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import Settings
from agora_callbacks.workers import timers
from agora_callbacks.workers.ordering import Ordering, Record, member_of, scripts
from agora_callbacks.workers.ordering.clock import RedisClock


def redis_now(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def acknowledged(client: redis.Redis, entry_id: str) -> bool:
    rows: Any = client.xpending_range(keys.INBOX, keys.INBOX_GROUP, entry_id, entry_id, 1)
    return not rows


class _AfterFirstRun:
    """Stands for ``scripts`` in ``workers.timers``: runs ``action`` right after the
    sweep's round trip that ran ``take`` (another worker, at that moment)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.fired = False

    def run(self, client: redis.Redis, calls: Any) -> list[Any]:
        results = scripts.run(client, calls)
        if not self.fired:
            self.fired = True
            self.action()
        return results


# -- F1 ---------------------------------------------------------------------------------------
def test_f1_timer_sweep_race_an_admit_during_a_sweep_keeps_its_timer(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """F1: the old sweep took in one round trip and re-armed/removed timers in a
    second (``timer_set``); an event admitted in between, needing a hold, had its
    timer (``ZADD LT``, ignored: the due one was earlier) removed by the sweep: it
    stayed buffered with no timer. On 91a20d2 (adapted: the take left ``none`` after
    a handler's finish) the timer was gone after the sweep."""
    w = build(settings, redis_client)
    store(redis_client, body("f1", 0))
    w.take_in()
    assert_timer(redis_client, "f1", HOLD_MS)
    # Event 0's handler never starts: at its deadline the sweep's take dead-letters
    # it and leaves the recording idle; meanwhile another worker admits event 2.
    w.clock.advance(w.rt.ordering.deadline_ms)
    arrival = w.clock.ms

    def admit() -> None:
        store(redis_client, body("f1", 2))
        w.take_in()
        assert assert_timer(redis_client, "f1", HOLD_MS) == arrival + HOLD_MS

    monkeypatch.setattr(timers, "scripts", _AfterFirstRun(admit))
    assert w.sweep() == 1
    assert [d.reason for d in deadletters.list_(redis_client)] == ["lost"]
    assert assert_timer(redis_client, "f1", HOLD_MS) == arrival + HOLD_MS
    monkeypatch.undo()
    w.clock.advance(HOLD_MS)
    assert w.sweep() == 1
    assert w.published.keys() == ["f1:40:0", "f1:40:2"]
    assert w.published.tasks[-1][1][4] == [1, 1]
    assert_timer(redis_client, "f1", HOLD_MS)


def test_f1_timer_sweep_race_a_turn_finished_during_a_sweep_keeps_its_timer(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """F1, the other writer: a handler finishes its turn (the next event is taken,
    and its process dies before publishing it) between the sweep's take (which
    published the turn again) and the sweep's end. On 91a20d2 the sweep's
    ``timer_commit`` then put the timer at the handler deadline: the next event
    waited HANDLER_DEADLINE_S instead of DISPATCH_LEASE_MS."""
    w = build(settings, redis_client)
    store(redis_client, body("f1b", 0))
    store(redis_client, body("f1b", 1))
    w.take_in()
    first = w.published.tasks[0][1]
    w.clock.advance(LEASE_MS)

    def finish() -> None:
        turn = w.run(first, task="first-copy", publish_next=False)
        assert turn is not None and turn.member.startswith("1|")
        assert assert_timer(redis_client, "f1b", HOLD_MS) == w.clock.ms + LEASE_MS

    monkeypatch.setattr(timers, "scripts", _AfterFirstRun(finish))
    assert w.sweep() == 1
    assert w.published.keys() == ["f1b:40:0", "f1b:40:0"]  # published again by the sweep
    assert assert_timer(redis_client, "f1b", HOLD_MS) == w.clock.ms + LEASE_MS
    monkeypatch.undo()
    again = w.published.tasks[1][1]
    assert not w.dispatcher.handler_start("f1b", again[1], again[2], EVERY, "sweep-copy")
    w.clock.advance(LEASE_MS)
    assert w.sweep() == 1
    assert w.published.keys() == ["f1b:40:0", "f1b:40:0", "f1b:40:1"]


# -- F2 ---------------------------------------------------------------------------------------
def test_f2_sequences_up_to_2_53_do_not_stall_a_batch(
        settings: Settings, redis_client: redis.Redis) -> None:
    """F2: a gap ending at a sequence of 10^14 or more came back from Lua as
    ``1e+14``; parsing it raised and aborted the whole intake or sweep batch. On
    91a20d2 (adapted: REORDER_HOLD_MS=0, one intake batch) ``process`` raised
    ``ValueError: invalid literal for int() with base 10: '1e+15'`` and the normal
    recording of the same batch was neither published nor acknowledged."""
    top = 2**53 - 1
    w = build(settings, redis_client)
    for sid in ("big-1e14", "big-max", "big-late"):
        store(redis_client, body(sid, 0))
    w.take_in()
    for _, args in list(w.published.tasks):
        w.run(args)
    store(redis_client, body("big-1e14", 10**14 + 1))
    store(redis_client, body("big-max", top))
    store(redis_client, body("big-late", top))
    store(redis_client, body("n-mid", 3))
    w.take_in()
    w.clock.advance(HOLD_MS)
    # An intake batch: big-late's gap is skipped at its admit, next to normal ones.
    store(redis_client, body("big-late", top - 1))
    store(redis_client, body("n1", 0))
    store(redis_client, body("n2", 0))
    assert w.take_in() == 3
    # A sweep batch: the other two gaps and a recording seen from the middle.
    assert w.sweep() == 3
    got = {args[2]: args[4] for _, args in w.published.tasks[3:]}
    assert got == {
        f"big-late:40:{top - 1}": [1, top - 2],
        "n1:40:0": None, "n2:40:0": None,
        f"big-1e14:40:{10**14 + 1}": [1, 10**14],
        f"big-max:40:{top}": [1, top - 1],
        "n-mid:40:3": None,
    }
    assert inbox_empty(redis_client)
    assert counter(redis_client, "gaps") == (top - 2) + 10**14 + (top - 1)
    late = w.published.last(f"big-late:40:{top - 1}")
    nxt = w.run(late)
    assert nxt is not None and nxt.member == member_of(top, f"40:{top}") and nxt.gap is None
    assert redis_client.hget(keys.recording_order("big-late"), "next") == str(top + 1).encode()
    for sid in ("big-1e14", "big-max", "big-late", "n-mid", "n1", "n2"):
        assert_timer(redis_client, sid, HOLD_MS)


# -- F3 ---------------------------------------------------------------------------------------
def _started_turn(settings: Settings, redis_server: ServerProcess, redis_client: redis.Redis,
                  retry_s: int) -> tuple[World, list[Any]]:
    # The turn is taken and started with the test's own client (a busy machine must
    # not time the setup out); the world returned times out after 0.2 s
    # (REDIS_TIMEOUT_S), on Redis's own clock, with real sleeps.
    setup = build(settings, redis_client, clock=RedisClock())
    store(redis_client, body("f3", 0))
    store(redis_client, body("f3", 1))
    setup.take_in()
    args = setup.published.tasks[0][1]
    assert setup.dispatcher.handler_start("f3", args[1], args[2], EVERY, "t1")
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.2,
                                  socket_connect_timeout=0.2)
    w = build(settings, client, clock=RedisClock(), REDIS_TIMEOUT_S="0.2",
              REDIS_RETRY_S=str(retry_s))
    return w, args


def test_f3_a_handler_outcome_is_recorded_once_redis_is_back(
        settings: Settings, redis_server: ServerProcess, redis_client: redis.Redis) -> None:
    """F3: Redis unavailable for a moment just as a handler ends: finish was tried
    once and the outcome forgotten (the handler later dead-lettered as lost). On
    91a20d2 (adapted: ``Dispatcher.handler_done(sid, member, name)``) it raised
    ``redis.exceptions.TimeoutError: Timeout reading from socket`` after 0.2 s."""
    w, args = _started_turn(settings, redis_server, redis_client, retry_s=10)
    pause_all(redis_server.url, 1500)
    began = time.monotonic()
    nxt = w.dispatcher.handler_done("f3", args[1], args[2], EVERY, "t1")
    assert time.monotonic() - began > 1.0  # it did wait for Redis
    assert nxt is not None and nxt.dispatch and nxt.member.startswith("1|")
    assert redis_client.hget(keys.recording_order("f3"), "cur") == nxt.member.encode()
    assert deadletters.count(redis_client) == 0
    assert_timer(redis_client, "f3", HOLD_MS)


def test_f3_a_handler_outcome_gives_up_after_redis_retry_s(
        settings: Settings, redis_server: ServerProcess, redis_client: redis.Redis) -> None:
    """F3, the bound: past REDIS_RETRY_S the error is raised (the turn is left to its
    deadline)."""
    w, args = _started_turn(settings, redis_server, redis_client, retry_s=1)
    pause_all(redis_server.url, 6000)
    began = time.monotonic()
    try:
        with pytest.raises((redis.TimeoutError, redis.ConnectionError)):
            w.dispatcher.handler_done("f3", args[1], args[2], EVERY, "t1")
        waited = time.monotonic() - began
    finally:
        await_answering(redis_server.url)
    assert 1.0 <= waited < 5.0
    slot = redis_client.hget(keys.recording_turn("f3"), EVERY)
    assert slot is not None and slot.startswith(b"t1|")  # not recorded


# -- F4 ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("first", ["taker", "slow"])
@pytest.mark.parametrize("kind", ["invalid", "stale"])
def test_f4_a_dead_body_taken_over_is_dead_lettered_once(
        settings: Settings, redis_client: redis.Redis, kind: str, first: str) -> None:
    """F4: an invalid or stale body whose entry another worker took over (the first
    stalled past CLAIM_IDLE_MS) was dead-lettered twice and counted twice. On
    91a20d2 both consumers wrote it, in either order, for both kinds: 2 dead
    letters."""
    w = build(settings, redis_client, CLAIM_IDLE_MS="50")
    raw = b'{"noticeId": 5' if kind == "invalid" else body(
        "f4", 0, notify_ms=w.clock.ms - 2 * 86_400_000)
    store(redis_client, raw)
    slow, taker = w.intake_for("slow"), w.intake_for("taker")
    entries = slow.read(block_ms=10)
    taken: Any = wait_for(taker.autoclaim, timeout=5, message="the entry to be taken over")
    assert [e.entry_id for e in taken] == [e.entry_id for e in entries]
    order = [(taker, taken), (slow, entries)]
    if first == "slow":
        order.reverse()
    for intake, batch in order:
        intake.process(batch)
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.body) for d in letters] == [("body", raw)]
    assert counter(redis_client, kind) == 1
    assert inbox_empty(redis_client)


# -- F5 ---------------------------------------------------------------------------------------
@pytest.fixture
def host_clock_skew(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Set this host's clock (``time.time``) off Redis's by a number of seconds."""
    real = time.time

    def skew(seconds: float) -> None:
        monkeypatch.setattr(time, "time", lambda: real() + seconds)

    return skew


@pytest.mark.parametrize("skew_s", [-30, 30])
def test_f5_the_stale_cutoff_follows_redis_clock_not_the_hosts(
        settings: Settings, redis_client: redis.Redis,
        host_clock_skew: Callable[[float], None], skew_s: int) -> None:
    """F5: the stale-body cutoff read the host's clock. With DEDUPE_TTL_S=60 and the
    host 30 s off Redis: a body 75 s old by Redis's clock (45 s by a host 30 s
    behind) is stale; one 45 s old by Redis's (75 s by a host 30 s ahead) is not.
    On 91a20d2 both were decided the other way (the first admitted and published,
    the second dead-lettered stale)."""
    w = build(settings, redis_client, clock=RedisClock(), DEDUPE_TTL_S="60")
    host_clock_skew(skew_s)
    age_s = 75 if skew_s < 0 else 45
    raw = body("f5", 0, notify_ms=redis_now(redis_client) - age_s * 1000)
    store(redis_client, raw)
    w.take_in()
    letters = deadletters.list_(redis_client)
    if age_s > 60:
        assert [(d.reason, d.body) for d in letters] == [("stale", raw)]
        assert w.published.tasks == []
    else:
        assert letters == []
        assert w.published.keys() == ["f5:40:0"]


def test_f5_the_timer_after_a_finish_follows_redis_clock_not_the_hosts(
        settings: Settings, redis_client: redis.Redis,
        host_clock_skew: Callable[[float], None]) -> None:
    """F5: the timer armed before ``finish`` was the host's now + DISPATCH_LEASE_MS.
    With the host 30 s behind Redis, a turn with a handler still running had its
    timer put 25 s in the past. On 91a20d2 the timer after the first handler's end
    was ~25 s before Redis's now (the state's due time is the other handler's
    deadline, an hour ahead)."""
    w = build(settings, redis_client, clock=RedisClock(), DISPATCH_LEASE_MS="5000",
              HANDLER_DEADLINE_S="3600")
    store(redis_client, body("f5t", 0, 31))  # two handlers
    w.take_in()
    host_clock_skew(-30)
    args = w.published.tasks[0][1]
    d = w.dispatcher
    assert d.handler_start("f5t", args[1], args[2], EVERY, "a")
    assert d.handler_start("f5t", args[1], args[2], "test_intake.uploaded", "b")
    assert d.handler_done("f5t", args[1], args[2], EVERY, "a") is None  # b still runs
    now = redis_now(redis_client)
    due = assert_timer(redis_client, "f5t", HOLD_MS)
    assert due is not None and now + 3_590_000 < due <= now + 3_600_000


def test_f5_every_decision_reads_the_injected_clock(
        settings: Settings, redis_client: redis.Redis) -> None:
    """F5 (new API): with a clock 30 s ahead of Redis's, the stale cutoff, the
    scripts' times and the sweep all follow that clock."""

    class Ahead(RedisClock):
        def now_ms(self, client: Any) -> int:
            return super().now_ms(client) + 30_000

        def script_ms(self) -> int:
            return redis_now(redis_client) + 30_000

    w = build(settings, redis_client, clock=Ahead(), DEDUPE_TTL_S="60")
    stale = body("f5c", 0, notify_ms=redis_now(redis_client) - 45_000)  # 75 s by the clock
    store(redis_client, stale)
    store(redis_client, body("f5c", 1))
    w.take_in()
    assert [d.reason for d in deadletters.list_(redis_client)] == ["stale"]
    # 1 waits for the start of the recording: the hold is on the clock's time.
    due = timer_of(redis_client, "f5c")
    assert due is not None and due - HOLD_MS >= redis_now(redis_client) + 29_000
    # Due a hold after its arrival by the clock (by Redis's, 30 s later).
    wait_for(lambda: w.sweep() == 1, timeout=5, message="the start hold over")
    assert w.published.keys() == ["f5c:40:1"]


# -- F6 ---------------------------------------------------------------------------------------
def _mixed_batch(client: redis.Redis) -> list[str]:
    return [store(client, body("f6a", 0)), store(client, body("f6a", 2)),
            store(client, body("f6b", 0)), store(client, body(None, None, 40, notice_id="f6n")),
            store(client, b"not json")]


def _outcome_recorded(client: redis.Redis, entry_id: str, raw: bytes,
                      published: list[str]) -> bool:
    """The outcome of an entry is in Redis (or out: published)."""
    letters = [d for d in deadletters.list_(client) if d.body == raw]
    if letters:
        return True
    text = raw.decode()
    sid = (keys.unordered_sid("f6n") if '"sid"' not in text
           else "f6a" if '"f6a"' in text else "f6b")
    fields = {v.decode() for v in client.hvals(keys.recording_dedupe(sid))}
    return entry_id in fields and timer_of(client, sid) is not None


def test_f6_a_flushed_script_cache_leaves_no_entry_acknowledged_without_its_outcome(
        settings: Settings, redis_client: redis.Redis) -> None:
    """F6: ``NOSCRIPT`` inside the intake's MULTI/EXEC failed only that command: the
    entry's XACK/XDEL applied while its commit and timer did not. (On 91a20d2, with
    the flush just before the MULTI/EXEC, this passes: ``run`` reran the failed
    commits outside the transaction; the next test shows the window.)"""
    w = build(settings, redis_client)
    ids = _mixed_batch(redis_client)
    entries = w.intake.read(block_ms=10)
    redis_client.script_flush()
    assert w.intake.process(entries) == len(ids)
    assert inbox_empty(redis_client)
    keys_ = w.published.keys()
    for entry in entries:
        assert _outcome_recorded(redis_client, entry.entry_id, entry.body, keys_)
    assert keys_ == ["f6a:40:0", "f6b:40:0", "notice:f6n"]
    for sid in ("f6a", "f6b"):
        assert_timer(redis_client, sid, HOLD_MS)


# Every body's outcome and its acknowledgement are one script now, in the batch's one
# round trip (round trip 2, the old MULTI/EXEC of commits, is gone).
@pytest.mark.parametrize("round_trip", [1])
def test_f6_a_worker_that_dies_repairing_noscript_acknowledges_nothing_without_its_outcome(
        settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        round_trip: int) -> None:
    """F6, strictly: the script cache is flushed just before the intake's n-th round
    trip of a batch, and the worker dies (its connection fails) while repairing it.
    Every entry is then either still pending or acknowledged with its outcome in
    Redis; a worker taking the pending ones over completes them, each once. On
    91a20d2 (round trip 2, the MULTI/EXEC) 4 of the 5 entries were acknowledged,
    no commit ran and nothing was published; recording f6b's event 0 had no timer
    either: lost for good. (Round trip 1 passes there too.)"""
    w = build(settings, redis_client, CLAIM_IDLE_MS="1")
    _mixed_batch(redis_client)
    entries = w.intake.read(block_ms=10)
    scripts.load_all(redis_client)  # every script cached: the flush below is the only one
    real_run, real_load = scripts.run, scripts.load_all
    calls = {"run": 0}

    def run(client: redis.Redis, batch: Any) -> list[Any]:
        calls["run"] += 1
        if calls["run"] == round_trip:
            redis_client.script_flush()
        return real_run(client, batch)

    def dies(client: redis.Redis) -> None:
        raise redis.ConnectionError("the worker died here")

    monkeypatch.setattr(scripts, "run", run)
    monkeypatch.setattr(scripts, "load_all", dies)
    with pytest.raises(redis.ConnectionError):
        w.intake.process(entries)
    monkeypatch.setattr(scripts, "run", real_run)
    monkeypatch.setattr(scripts, "load_all", real_load)
    published = w.published.keys()
    for entry in entries:
        if acknowledged(redis_client, entry.entry_id):
            assert _outcome_recorded(redis_client, entry.entry_id, entry.body, published), entry
    taker = w.intake_for("taker")
    wait_for(lambda: taker.process(taker.autoclaim()) or inbox_empty(redis_client),
             timeout=5, message="the pending entries taken over")
    wait_for(lambda: inbox_empty(redis_client), timeout=5, message="every entry settled")
    got = w.published.keys()
    assert sorted(set(got)) == ["f6a:40:0", "f6b:40:0", "notice:f6n"]
    assert got.count("f6a:40:0") == got.count("f6b:40:0") == 1
    assert counter(redis_client, "admitted") == 4
    assert counter(redis_client, "invalid") == 1
    assert deadletters.count(redis_client) == 1
    for sid in ("f6a", "f6b"):
        assert_timer(redis_client, sid, HOLD_MS)


# -- gap holds --------------------------------------------------------------------------------
def test_gap_holds_do_not_add_up(redis_client: redis.Redis) -> None:
    """Four gaps in a row (1, 3, 5, 7 missing; 2, 4, 6, 8 arrived 100 ms apart,
    within the first hold) used to hold the recording REORDER_HOLD_MS for each gap,
    one after the other: 4 x the hold. Now an event waits for missing earlier
    sequences at most REORDER_HOLD_MS after its own arrival: each one goes at its
    arrival + the hold. On 91a20d2 (adapted: its scripts with ``now_ms``) event 4
    was still held at T + hold + 100 (its hold began when event 2 was taken, at
    T + hold: it would have gone at T + 2 x hold, event 8 at T + 4 x hold)."""
    hold, t0, sid = 1_000, 1_700_000_000_000, "holds"
    clock = VirtualClock(t0)
    ordering = Ordering(ttl_s=86_400, hold_ms=hold, lease_ms=5_000, deadline_ms=60_000,
                        clock=clock)

    def record(seq: int) -> Record:
        return Record(handlers=("h",), key=f"{sid}:40:{seq}", meta={}, entry_id=f"{seq}-0",
                      body=b"{}")

    def admit(seq: int) -> Any:
        return ordering.admit(redis_client, sid, f"40:{seq}", seq, f"{seq}-0", record(seq)).turn

    def run(member: str) -> Any:
        assert ordering.start(redis_client, sid, member, "h", "t")
        return ordering.finish(redis_client, sid, member, "h", "t").turn

    turn = admit(0)
    assert run(turn.member).kind == "none"
    arrived = {}
    for i, seq in enumerate((2, 4, 6, 8)):
        clock.ms = arrived[seq] = t0 + 100 * i
        assert admit(seq).kind == "wait"
        assert_timer(redis_client, sid, hold)
    clock.ms = t0 + hold - 1
    assert ordering.take(redis_client, sid).kind == "wait"
    taken = []
    while len(taken) < 4:
        due = timer_of(redis_client, sid)
        assert due is not None
        clock.ms = due
        turn = ordering.take(redis_client, sid)
        while turn.kind == "event":
            taken.append((turn.member, turn.gap, clock.ms))
            turn = run(turn.member)
            assert_timer(redis_client, sid, hold)
    assert taken == [(member_of(s, f"40:{s}"), (s - 1, s - 1), arrived[s] + hold)
                     for s in (2, 4, 6, 8)]
    assert clock.ms == t0 + 300 + hold  # not t0 + 4 x hold
    assert turn.kind == "none" and timer_of(redis_client, sid) is None


def test_gap_holds_each_event_waits_at_most_the_hold_after_its_own_arrival(
        redis_client: redis.Redis) -> None:
    """The rule's other side: a later event, arrived after the first hold began,
    still gets its own full hold for the sequences missing before it."""
    hold, t0, sid = 1_000, 1_700_000_000_000, "holds2"
    clock = VirtualClock(t0)
    ordering = Ordering(ttl_s=86_400, hold_ms=hold, lease_ms=5_000, deadline_ms=60_000,
                        clock=clock)

    def admit(seq: int) -> Any:
        rec = Record(handlers=("h",), key=f"{sid}:40:{seq}", meta={}, entry_id="e",
                     body=b"{}")
        return ordering.admit(redis_client, sid, f"40:{seq}", seq, f"{seq}-0", rec).turn

    def run(member: str) -> Any:
        assert ordering.start(redis_client, sid, member, "h", "t")
        return ordering.finish(redis_client, sid, member, "h", "t").turn

    run(admit(0).member)
    admit(2)
    clock.ms = t0 + 600
    admit(4)
    clock.ms = t0 + hold
    turn = ordering.take(redis_client, sid)
    assert turn.kind == "event" and turn.gap == (1, 1)
    nxt = run(turn.member)
    assert nxt.kind == "wait" and nxt.due_ms == t0 + 600 + hold
    assert_timer(redis_client, sid, hold)
    clock.ms = t0 + 600 + hold
    assert ordering.take(redis_client, sid).gap == (3, 3)


@pytest.fixture(autouse=True)
def _no_leftover_pause(redis_server: ServerProcess) -> Iterator[None]:
    yield
    await_answering(redis_server.url)

