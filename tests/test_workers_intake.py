"""Intake, sweep and the two ends of a handler's run, in-process: parse, dead-letter,
dedupe, admit, publish, acknowledge; start, finish, republish, lost.

The runtime is built with a clock the test drives and a publisher that collects the
handler tasks instead of sending them (``workers_support``), except where a test
needs Celery itself (the Celery publisher, a handler task run by Celery's tracer).
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import prometheus_client
import pytest
import redis
import structlog
from celery import Celery
from celery.exceptions import Ignore, Reject
from conftest import wait_for
from test_failure_streak import Lines
from workers_support import (
    Published,
    VirtualClock,
    assert_timer,
    await_answering,
    body,
    pause_all,
    store,
    timer_of,
)

from agora_callbacks import deadletters, inbox, keys, recording_timeline, recordings_index
from agora_callbacks.settings import Settings
from agora_callbacks.workers import REGISTRY, on_event, runtime
from agora_callbacks.workers import intake as intake_module
from agora_callbacks.workers.app import celery_config
from agora_callbacks.workers.application import DEFAULT_QUEUE
from agora_callbacks.workers.dispatch import Dispatcher
from agora_callbacks.workers.intake import Intake
from agora_callbacks.workers.ordering import Failure, Record, Turn
from agora_callbacks.workers.ordering.clock import RedisClock
from agora_callbacks.workers.publish import celery_publisher
from agora_callbacks.workers.runtime import Runtime
from agora_callbacks.workers.timers import sweep

HOLD_MS = 300
LEASE_MS = 1_000
DEADLINE_S = 60
EVERY = "test_intake.every"
UPLOADED = "test_intake.uploaded"
CHOOSY = "test_intake.choosy"


@on_event("*", name=EVERY)
def every(event: Any) -> None:  # pragma: no cover - published, not run, here
    pass


@on_event("uploaded", name=UPLOADED)
def uploaded(event: Any) -> None:  # pragma: no cover
    pass


#: What ``choosy`` does with the next event: "ignore", "reject", "requeue", "ok".
CHOICE: dict[str, str] = {"next": "ok"}
choosy_runs: list[str] = []


@on_event("uploading_progress", name=CHOOSY)
def choosy(event: Any, key: str) -> None:
    choosy_runs.append(key)
    choice = CHOICE["next"]
    if choice == "ignore":
        raise Ignore()
    if choice == "reject":
        raise Reject("not an event for us", requeue=False)
    if choice == "requeue":
        raise Reject("not now", requeue=True)


@dataclass
class World:
    """A runtime on the test's Redis with a virtual clock and a collecting publisher."""

    rt: Runtime
    clock: VirtualClock
    published: Published
    intake: Intake

    @property
    def dispatcher(self) -> Dispatcher:
        return self.intake.dispatcher

    def take_in(self, intake: Intake | None = None) -> int:
        it = intake or self.intake
        return it.process(it.read(block_ms=10))

    def sweep(self) -> int:
        return sweep(self.dispatcher)

    def run(self, args: list[Any], name: str = EVERY, task: str = "t1",
            failure: Failure | None = None, publish_next: bool = True) -> Turn | None:
        """A handler task's two ends: start (must be allowed), finish; then, as the
        after-handler thread does, publish the next event."""
        sid, member, key = args[0], args[1], args[2]
        assert self.dispatcher.handler_start(sid, member, key, name, task)
        turn = self.dispatcher.handler_done(sid, member, key, name, task, failure,
                                            body=str(args[6]).encode(), meta=args[5])
        if publish_next:
            self.dispatcher.dispatch(sid, turn)
        return turn

    def intake_for(self, consumer: str) -> Intake:
        return Intake(self.rt, consumer=consumer, client=self.rt.client)


def build(settings: Settings, client: redis.Redis, clock: Any = None,
          **env: str) -> World:
    values = {"REDIS_URL": settings.redis_url, "REORDER_HOLD_MS": str(HOLD_MS),
              "DISPATCH_LEASE_MS": str(LEASE_MS), "HANDLER_DEADLINE_S": str(DEADLINE_S),
              "LOG_FORMAT": "json", **env}
    # Timeouts shrunk on purpose (a 300 ms hold, a 50 ms claim idle): no rules between them.
    s = Settings.from_env(values, check=False)
    published = Published()
    clock = clock if clock is not None else VirtualClock()
    rt = Runtime.build(s, client=client, clock=clock, publish=published)
    intake = Intake(rt, consumer="test", client=client)
    intake.ensure_group()
    return World(rt, clock, published, intake)


@pytest.fixture
def w(settings: Settings, redis_client: redis.Redis,
      monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    world = build(settings, redis_client)
    monkeypatch.setattr(runtime, "get", lambda: world.rt)  # what a handler task reads
    yield world


def counter(client: redis.Redis, name: str) -> int:
    return int(client.hget(keys.COUNTERS, name) or 0)


def inbox_empty(client: redis.Redis) -> bool:
    return (client.xlen(keys.INBOX) == 0
            and client.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0)


def timer_ok(w: World, sid: str) -> int | None:
    return assert_timer(w.rt.client, sid, HOLD_MS)


# -- intake -------------------------------------------------------------------------------
def test_ordered_events_are_admitted_deduped_and_dispatched_in_turn(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s1", 0))
    store(redis_client, body("s1", 1))
    store(redis_client, body("s1", 0))  # redundant copy: new noticeId, same key
    assert w.take_in() == 3
    assert [name for name, _ in w.published.tasks] == [EVERY]
    args = w.published.tasks[0][1]
    sid, _, key, late, gap, meta, raw = args
    assert (sid, key, late, gap) == ("s1", "s1:40:0", False, None)
    assert json.loads(raw)["payload"]["sequence"] == 0 and meta["signature"] == "v2"
    assert inbox_empty(redis_client)
    assert counter(redis_client, "admitted") == 2
    assert counter(redis_client, "duplicates") == 1
    assert counter(redis_client, "dispatched") == 1
    assert timer_ok(w, "s1") == w.clock.ms + LEASE_MS
    # The handler of event 0 finishes: event 1 is published from there.
    nxt = w.run(args)
    assert nxt is not None and nxt.member.startswith("1|")
    assert w.published.keys() == ["s1:40:0", "s1:40:1"]
    assert redis_client.hget(keys.recording_order("s1"), "cur") == nxt.member.encode()
    timer_ok(w, "s1")


def test_all_matching_handlers_are_published(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s2", 0, 31))
    w.take_in()
    assert sorted(n for n, _ in w.published.tasks) == [EVERY, UPLOADED]
    assert redis_client.hlen(keys.recording_turn("s2")) == 2
    args = w.published.tasks[0][1]
    assert w.run(args, EVERY, "a") is None  # pending: the other handler runs
    nxt = w.run(args, UPLOADED, "b")
    assert nxt is not None and nxt.kind == "none" and timer_of(redis_client, "s2") is None


def test_invalid_and_stale_bodies_are_dead_lettered_with_their_bytes(
        w: World, redis_client: redis.Redis) -> None:
    bad = b'{"noticeId": 5'
    old = body("s3", 0, notify_ms=w.clock.ms - 2 * 86_400_000)
    store(redis_client, bad)
    store(redis_client, old)
    store(redis_client, old, origin="dlq:1-0")  # re-injected by an operator: accepted
    assert w.take_in() == 3
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason) for d in letters] == [("body", "invalid_json"), ("body", "stale")]
    assert letters[0].body == bad and letters[1].body == old
    assert letters[0].meta["signature"] == "v2" and letters[0].at_ms == w.clock.ms
    assert letters[1].key == "s3:40:0"
    assert w.published.keys() == ["s3:40:0"]
    assert inbox_empty(redis_client)
    assert (counter(redis_client, "invalid"), counter(redis_client, "stale")) == (1, 1)



@pytest.mark.parametrize("field", ["sid", "noticeId"])
def test_a_lone_surrogate_in_a_key_is_dead_lettered_not_a_poisoned_batch(
        w: World, redis_client: redis.Redis, field: str) -> None:
    """``"\\ud800"`` is valid JSON syntax but no Unicode character: the sid or
    noticeId it decodes to cannot be written to Redis (UTF-8). It used to fail the
    whole batch's pipeline, every round, the good bodies with it, for good."""
    bad = body("s-bad", 0, notice_id="n-bad")
    bad = bad.replace(b'"s-bad"' if field == "sid" else b'"n-bad"', b'"x\\ud800"')
    store(redis_client, bad)
    store(redis_client, body("s-good", 0))
    assert w.take_in() == 2
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.body) for d in letters] == [("body", "invalid_json", bad)]
    assert "surrogate" in letters[0].detail
    assert w.published.keys() == ["s-good:40:0"]
    assert inbox_empty(redis_client)

def test_unordered_events_are_deduped_by_notice_id(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body(None, None, 40, notice_id="n-1"))
    store(redis_client, body(None, None, 40, notice_id="n-1"))
    store(redis_client, body(None, None, 40, notice_id="n-2", product_id=1))
    assert w.take_in() == 3
    # Each the only event of a recording of its own, keyed by its noticeId.
    assert [(a[0], a[1], a[2]) for _, a in w.published.tasks] == [
        ("notice:n-1", "0|n:n-1", "notice:n-1"), ("notice:n-2", "0|n:n-2", "notice:n-2")]
    assert inbox_empty(redis_client)
    assert counter(redis_client, "admitted") == 2
    assert counter(redis_client, "dispatched") == 2
    assert counter(redis_client, "duplicates") == 1


def test_unknown_event_types_still_flow(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s4", 0, 777))
    w.take_in()
    assert w.published.keys() == ["s4:777:0"]


def test_a_gap_is_skipped_by_the_timer_sweep(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s5", 0))
    w.take_in()
    w.run(w.published.tasks[0][1])
    store(redis_client, body("s5", 2))
    w.take_in()
    assert len(w.published.tasks) == 1
    assert timer_ok(w, "s5") == w.clock.ms + HOLD_MS
    w.clock.advance(HOLD_MS - 1)
    assert w.sweep() == 0
    w.clock.advance(1)
    assert w.sweep() == 1
    _, _, key, late, gap, _, _ = w.published.tasks[1][1]
    assert (key, late, gap) == ("s5:40:2", False, [1, 1])
    assert counter(redis_client, "gaps") == 1
    timer_ok(w, "s5")


def test_an_entry_left_by_a_dead_consumer_is_taken_over(
        settings: Settings, redis_client: redis.Redis) -> None:
    w = build(settings, redis_client, CLAIM_IDLE_MS="50")
    store(redis_client, body("s6", 0))
    # Another consumer reads it and dies without settling it.
    redis_client.xreadgroup(keys.INBOX_GROUP, "dead", {keys.INBOX: ">"}, count=10)
    assert w.take_in() == 0
    taker = w.intake_for("taker")
    wait_for(lambda: taker.process(taker.autoclaim()), timeout=5,
             message="the entry to be taken over")
    assert w.published.keys() == ["s6:40:0"]
    assert inbox_empty(redis_client)
    assert counter(redis_client, "admitted") == 1


# -- the sweep: republish, lost ------------------------------------------------------------
def _admit_unpublished(w: World, sid: str, seq: int) -> Turn:
    """A worker admitted the event (its turn taken) and died before publishing it."""
    raw = body(sid, seq)
    record = Record(handlers=(EVERY,), key=f"{sid}:40:{seq}", meta={}, entry_id="1-0",
                    body=raw)
    return w.rt.ordering.admit(w.rt.client, sid, f"40:{seq}", seq, "1-0", record).turn


def test_a_turn_whose_publisher_died_is_published_again_after_the_lease(
        w: World, redis_client: redis.Redis) -> None:
    assert _admit_unpublished(w, "s7", 0).dispatch
    assert w.published.tasks == []
    assert timer_ok(w, "s7") == w.clock.ms + LEASE_MS
    w.clock.advance(LEASE_MS - 1)
    assert w.sweep() == 0
    w.clock.advance(1)
    assert w.sweep() == 1
    assert w.published.keys() == ["s7:40:0"]
    assert timer_ok(w, "s7") == w.clock.ms + 2 * LEASE_MS  # backoff
    assert counter(redis_client, "republished") == 1
    assert counter(redis_client, "dispatched") == 1


def test_a_copy_published_again_starts_once(w: World, redis_client: redis.Redis) -> None:
    # The first publish is delayed past the lease; the sweep publishes the turn
    # again; then the delayed copy arrives too. Whichever starts first runs.
    first = _admit_unpublished(w, "s8", 0)
    w.clock.advance(LEASE_MS)
    w.sweep()
    w.dispatcher.dispatch("s8", first)  # the late publish
    assert w.published.count("s8:40:0") == 2
    copies = [args for _, args in w.published.tasks]
    d = w.dispatcher
    assert d.handler_start("s8", copies[0][1], copies[0][2], EVERY, "sweep-copy")
    assert not d.handler_start("s8", copies[1][1], copies[1][2], EVERY, "late-copy")
    assert counter(redis_client, "skipped_copies") == 1
    # Once started, nothing is due before its deadline.
    assert timer_ok(w, "s8") == w.clock.ms + DEADLINE_S * 1000
    assert counter(redis_client, "dispatched") == 1


def test_handlers_that_never_start_are_dead_lettered_as_lost(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s9", 0))
    store(redis_client, body("s9", 1))
    w.take_in()
    assert w.published.keys() == ["s9:40:0"]
    deadline = w.clock.ms + DEADLINE_S * 1000
    # Event 0's handler task never starts: published again with backoff meanwhile.
    while w.clock.ms < deadline:
        w.clock.ms = min(timer_of(redis_client, "s9") or deadline, deadline)
        w.sweep()
        timer_ok(w, "s9")
    assert w.published.keys()[-1] == "s9:40:1"
    assert set(w.published.keys()[:-1]) == {"s9:40:0"}
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.key) for d in letters] == [
        ("handler", "lost", EVERY, "s9:40:0")]
    assert "never started" in letters[0].detail
    assert counter(redis_client, "deadletters_handler") == 1


def test_a_handler_that_started_and_never_reported_is_lost_and_its_copy_skipped(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s10", 0))
    store(redis_client, body("s10", 1))
    w.take_in()
    args = w.published.tasks[0][1]
    assert w.dispatcher.handler_start("s10", args[1], args[2], EVERY, "t1")
    w.clock.advance(DEADLINE_S * 1000 - 1)
    assert w.sweep() == 0
    w.clock.advance(1)
    assert w.sweep() == 1
    assert w.published.keys() == ["s10:40:0", "s10:40:1"]
    letters = deadletters.list_(redis_client)
    assert [(d.reason, d.handler) for d in letters] == [("lost", EVERY)]
    assert "no report" in letters[0].detail
    # The lost task reports at last: not its turn any more; nothing written twice.
    assert w.dispatcher.handler_done("s10", args[1], args[2], EVERY, "t1") is None
    assert not w.dispatcher.handler_start("s10", args[1], args[2], EVERY, "t1")
    assert deadletters.count(redis_client) == 1
    timer_ok(w, "s10")


def test_a_pool_process_that_died_after_ending_a_turn_is_replaced_by_the_sweep(
        w: World, redis_client: redis.Redis) -> None:
    # handler_done ended event 0's turn and took event 1 (the task is then
    # acknowledged); the process died before publishing event 1: the sweep
    # publishes it after the lease.
    store(redis_client, body("s11", 0))
    store(redis_client, body("s11", 1))
    w.take_in()
    turn = w.run(w.published.tasks[0][1], publish_next=False)
    assert turn is not None and turn.member.startswith("1|")
    assert timer_ok(w, "s11") == w.clock.ms + LEASE_MS
    assert w.sweep() == 0
    w.clock.advance(LEASE_MS)
    assert w.sweep() == 1
    assert w.published.keys() == ["s11:40:0", "s11:40:1"]
    assert counter(redis_client, "dispatched") == 2


def test_the_after_handler_thread_publishes_the_next_event(
        w: World, redis_client: redis.Redis) -> None:
    from agora_callbacks.workers.task import _AfterHandler

    for seq in range(3):
        store(redis_client, body("s12", seq))
    w.take_in()
    dispatcher = w.dispatcher
    threads: list[str] = []
    real = dispatcher.dispatch

    def noting(sid: str, turn: Any) -> None:
        threads.append(threading.current_thread().name)
        real(sid, turn)

    dispatcher.dispatch = noting  # type: ignore[method-assign]
    after = _AfterHandler()
    # Off (not a pool process): published inline.
    turn = w.run(w.published.tasks[0][1], publish_next=False)
    assert turn is not None
    after.submit(dispatcher, "s12", turn)
    assert threads == [threading.current_thread().name]
    assert len(w.published.tasks) == 2
    # On: published by its thread; drain waits for it.
    after.enable()
    turn = w.run(w.published.tasks[1][1], publish_next=False)
    assert turn is not None
    after.submit(dispatcher, "s12", turn)
    after.drain()
    assert threads[1].startswith("agora-after-handler")
    assert w.published.keys() == ["s12:40:0", "s12:40:1", "s12:40:2"]


def test_a_dispatched_turn_has_its_timer_at_the_lease_then_at_the_handler_deadline(
        w: World, redis_client: redis.Redis) -> None:
    # While handlers run within their deadline, the sweep has nothing to look at.
    store(redis_client, body("s13", 0))
    store(redis_client, body("s13", 1))
    w.take_in()
    assert timer_ok(w, "s13") == w.clock.ms + LEASE_MS
    args = w.published.tasks[0][1]
    w.clock.advance(10)
    assert w.dispatcher.handler_start("s13", args[1], args[2], EVERY, "t1")
    assert timer_ok(w, "s13") == w.clock.ms + DEADLINE_S * 1000
    w.clock.advance(LEASE_MS * 3)
    assert w.sweep() == 0
    w.dispatcher.handler_done("s13", args[1], args[2], EVERY, "t1")
    assert timer_ok(w, "s13") == w.clock.ms + LEASE_MS  # event 1 taken, not published yet


def test_a_final_failure_is_dead_lettered_once(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s14", 0))
    store(redis_client, body("s14", 1))
    w.take_in()
    args = w.published.tasks[0][1]
    failure = Failure("handler_failed", "Traceback ...", "ValueError: boom")
    nxt = w.run(args, failure=failure)
    assert nxt is not None and nxt.member.startswith("1|")
    # Reported again (a redelivered message failing once more): nothing written.
    assert w.dispatcher.handler_done("s14", args[1], args[2], EVERY, "t1", failure) is None
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.key, d.exception) for d in letters] == [
        ("handler", "handler_failed", EVERY, "s14:40:0", "ValueError: boom")]
    assert counter(redis_client, "deadletters_handler") == 1
    assert w.published.keys() == ["s14:40:0", "s14:40:1"]


# -- events without ordering ------------------------------------------------------------------
def test_an_unordered_entry_taken_over_is_published_by_both_and_runs_once(
        settings: Settings, redis_client: redis.Redis) -> None:
    # A consumer read the entry and was delayed past CLAIM_IDLE_MS; another took it
    # over; the first admit publishes, the second finds the turn taken (busy): the
    # entry is settled and counted once, and the handler starts once.
    w = build(settings, redis_client, CLAIM_IDLE_MS="50")
    slow, taker = w.intake_for("slow"), w.intake_for("taker")
    store(redis_client, body(None, None, 40, notice_id="n-late"))
    entries = slow.read(block_ms=10)
    taken: Any = wait_for(taker.autoclaim, timeout=5, message="the entry to be taken over")
    assert taker.process(taken) == 1
    slow.process(entries)
    assert w.published.count("notice:n-late") == 1
    assert inbox_empty(redis_client)
    assert counter(redis_client, "admitted") == 1
    assert counter(redis_client, "dispatched") == 1
    (_, a), = w.published.tasks
    d = w.dispatcher
    sid, member, key = a[0], a[1], a[2]
    assert d.handler_start(sid, member, key, EVERY, "task-a")
    assert not d.handler_start(sid, member, key, EVERY, "task-b")  # a copy
    assert d.handler_done(sid, member, key, EVERY, "task-a").kind == "none"  # type: ignore[union-attr]
    assert not d.handler_start(sid, member, key, EVERY, "task-a")  # finished: no copy runs
    assert counter(redis_client, "skipped_copies") == 2


def test_an_unordered_failure_is_dead_lettered_once(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body(None, None, 40, notice_id="n-fail"))
    w.take_in()
    (_, args), = w.published.tasks
    sid, member, key = args[0], args[1], args[2]
    failure = Failure("handler_failed", "tb", "KeyError: 'x'")
    d = w.dispatcher
    assert d.handler_start(sid, member, key, EVERY, "t1")
    d.handler_done(sid, member, key, EVERY, "t1", failure)
    d.handler_done(sid, member, key, EVERY, "t1", failure)
    letters = deadletters.list_(redis_client)
    assert [(x.kind, x.reason, x.handler, x.key, x.exception) for x in letters] == [
        ("handler", "handler_failed", EVERY, "notice:n-fail", "KeyError: 'x'")]
    assert counter(redis_client, "deadletters_handler") == 1


# -- Celery itself ----------------------------------------------------------------------------
def celery_on_test_redis(settings: Settings) -> Celery:
    """A Celery app configured like the workers' one, on the test's Redis (the
    module-level app was built before the session's Redis existed). A handler
    task published with its producer goes to this app's broker."""
    app = Celery("agora_callbacks_test", set_as_current=False)
    app.conf.update(celery_config(settings))
    return app


def queued(client: redis.Redis) -> list[tuple[str, list[Any]]]:
    """(task name, args) of the messages waiting in the default Celery queue."""
    out = []
    for raw in reversed(client.lrange(DEFAULT_QUEUE, 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def test_the_celery_publisher_sends_one_task_per_handler(
        settings: Settings, redis_client: redis.Redis) -> None:
    s = build(settings, redis_client).rt.settings
    publish = celery_publisher(celery_on_test_redis(settings))
    rt = Runtime.build(s, client=redis_client, publish=publish)
    intake = Intake(rt, consumer="test", client=redis_client)
    store(redis_client, body("s15", 0, 31))
    assert intake.process(intake.read(block_ms=10)) == 1
    sent = queued(redis_client)
    assert sorted(name for name, _ in sent) == [EVERY, UPLOADED]
    assert all(args[2] == "s15:31:0" and args[0] == "s15" for _, args in sent)


def _choosy_args(w: World, redis_client: redis.Redis, sid: str) -> list[Any]:
    store(redis_client, body(sid, 0, 33))
    store(redis_client, body(sid, 1, 33))
    w.take_in()
    return next(args for name, args in w.published.tasks if name == CHOOSY)


def _apply(args: list[Any], task_id: str) -> None:
    REGISTRY.get(CHOOSY).task.apply(args=args, task_id=task_id)  # type: ignore[union-attr]


@pytest.mark.parametrize("choice", ["ok", "ignore", "reject"])
def test_a_handler_task_that_succeeds_ignores_or_rejects_ends_its_part_of_the_turn(
        w: World, redis_client: redis.Redis, choice: str) -> None:
    args = _choosy_args(w, redis_client, f"s16-{choice}")
    CHOICE["next"] = choice
    choosy_runs.clear()
    w.run(args, EVERY, "every-task")  # the other handler of the event
    _apply(args, "choosy-task")
    assert choosy_runs == [args[2]]
    # The turn is over: the next event is published (inline: not a pool process).
    assert w.published.keys().count(f"s16-{choice}:33:1") == 2  # both handlers
    letters = deadletters.list_(redis_client)
    if choice == "reject":
        assert [(d.reason, d.handler) for d in letters] == [("rejected", CHOOSY)]
        assert "not an event for us" in letters[0].exception
    else:
        assert letters == []
    # A copy of the task (another id) or the same task redelivered after the
    # finish: skipped, the handler does not run again.
    _apply(args, "choosy-copy")
    _apply(args, "choosy-task")
    assert choosy_runs == [args[2]]
    assert counter(redis_client, "skipped_copies") == 2
    timer_ok(w, f"s16-{choice}")
    # Each run once on the timeline, written by finish with the task's own duration.
    runs = _timeline(redis_client, f"s16-{choice}")[0].runs
    assert sorted((r["handler"], r["outcome"]) for r in runs) == sorted([
        (EVERY, "done"), (CHOOSY, "rejected" if choice == "reject" else "done")])
    assert isinstance(next(r for r in runs if r["handler"] == CHOOSY)["ms"], float | int)


def test_a_handler_task_rejected_with_requeue_keeps_the_turn_and_runs_again(
        w: World, redis_client: redis.Redis) -> None:
    args = _choosy_args(w, redis_client, "s17")
    w.run(args, EVERY, "every-task")
    CHOICE["next"] = "requeue"
    choosy_runs.clear()
    _apply(args, "choosy-task")
    slot = redis_client.hget(keys.recording_turn("s17"), CHOOSY)
    assert slot is not None and slot.startswith(b"choosy-task|")
    _apply(args, "choosy-copy")  # another copy: skipped
    assert len(choosy_runs) == 1
    CHOICE["next"] = "ok"
    _apply(args, "choosy-task")  # the message comes back: the same task runs again
    assert len(choosy_runs) == 2
    assert w.published.keys().count("s17:33:1") == 2
    assert deadletters.count(redis_client) == 0


def test_the_intake_loop_takes_in_sweeps_and_stops(
        settings: Settings, redis_client: redis.Redis) -> None:
    w = build(settings, redis_client, clock=RedisClock(), REORDER_HOLD_MS="100")
    stop = threading.Event()
    thread = threading.Thread(target=w.intake.run, args=(stop,), daemon=True)
    thread.start()
    try:
        store(redis_client, body("s18", 0))
        wait_for(lambda: w.published.keys() == ["s18:40:0"], timeout=10,
                 message="event 0 published")
        w.run(w.published.tasks[0][1])
        store(redis_client, body("s18", 2))  # 1 missing: the sweep skips it
        wait_for(lambda: len(w.published.tasks) == 2, timeout=10, message="the gap skipped")
        assert w.published.tasks[1][1][4] == [1, 1]
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


# -- known bugs (see the report of the protocol tests; dispatch.py is not ours to edit) -----
def test_an_unordered_failure_is_recorded_once_redis_is_back(
        settings: Settings, redis_server: Any, redis_client: redis.Redis) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.2,
                                  socket_connect_timeout=0.2)
    w = build(settings, client, clock=RedisClock(), REDIS_TIMEOUT_S="0.2", REDIS_RETRY_S="10")
    store(redis_client, body(None, None, 40, notice_id="n-paused"))
    w.take_in()
    (_, args), = w.published.tasks
    sid, member, key = args[0], args[1], args[2]
    assert w.dispatcher.handler_start(sid, member, key, EVERY, "t1")
    pause_all(redis_server.url, 1500)
    try:
        w.dispatcher.handler_done(sid, member, key, EVERY, "t1",
                                  Failure("handler_failed", "tb", "KeyError: 'x'"))
    finally:
        await_answering(redis_server.url)
    assert deadletters.count(redis_client) == 1


def test_a_failure_of_a_task_that_does_not_own_the_handler_is_not_counted(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s19", 0))
    w.take_in()
    args = w.published.tasks[0][1]
    def sample() -> float | None:
        return prometheus_client.REGISTRY.get_sample_value("acb_deadlettered_total",
                                         {"kind": "handler", "reason": "handler_failed"})

    before = sample()
    # A copy whose start never got through (or a lost handler reporting late) fails.
    w.dispatcher.handler_done("s19", args[1], args[2], EVERY, "not-the-owner",
                              Failure("handler_failed", "tb", "ValueError: x"))
    assert deadletters.count(redis_client) == 0
    assert sample() == before


# -- the dashboard's timeline (agora_callbacks.recording_timeline) -------------------------
def _timeline(client: redis.Redis, sid: str) -> dict[int, recording_timeline.Step]:
    return {s.sequence: s for s in recording_timeline.load(client, sid)}


def _members(client: redis.Redis, sid: str) -> list[dict[str, Any]]:
    return [json.loads(m) for m in client.zrange(keys.recording_timeline(sid), 0, -1)]


def test_an_event_without_a_user_handler_is_on_its_recordings_timeline(
        w: World, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default deployment may register no handler at all: every event is only
    # folded into its record, in the turn path (no task).
    monkeypatch.setattr(REGISTRY, "names_for", lambda event_type, msg_name: ())

    def arrive(seq: int, received_ms: int) -> None:
        inbox.store(redis_client, body("s30", seq), inbox.ReceiveMeta(
            received_ms=received_ms, signature="v2", secret_index=0,
            remote_addr="127.0.0.1", request_id=f"r{seq}"))

    arrive(0, 1_111)
    arrive(2, 3_333)
    w.take_in()
    assert w.published.tasks == []
    (step,) = _timeline(redis_client, "s30").values()
    assert step.sequence == 0 and step.runs == []
    assert step.event == {"k": "e", "seq": 0, "type": 40, "notice": step.event["notice"],
                          "sendts": 1_700_000_000_000, "received_ms": 1_111,
                          "key": "s30:40:0", "late": False, "gap": None}
    w.clock.advance(HOLD_MS)
    assert w.sweep() == 1  # 1 never came within the hold: 2 is taken after a gap
    arrive(1, 2_222)
    w.take_in()  # 1 comes late
    steps = _timeline(redis_client, "s30")
    assert sorted(steps) == [0, 1, 2]
    assert all(s.event is not None and s.runs == [] for s in steps.values())
    assert [(steps[s].event or {}).get("received_ms") for s in (1, 2)] == [2_222, 3_333]
    assert [(s, (steps[s].event or {})["late"], (steps[s].event or {})["gap"])
            for s in (1, 2)] == [(1, True, None), (2, False, [1, 1])]
    record = json.loads(redis_client.get(keys.recording_state("s30")) or b"{}")
    assert record["event_count"] == 3
    # The timeline expires with the record; no flag: nothing was dead-lettered.
    assert 0 < redis_client.ttl(keys.recording_timeline("s30")) <= w.rt.settings.record_ttl_s
    assert redis_client.zscore(recordings_index.flag_index("deadletters"), "s30") is None


def test_a_turn_folded_again_adds_no_second_event_member(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s31", 0))
    w.take_in()
    # Its publisher died: after the lease the sweep publishes (and folds) it again.
    w.clock.advance(LEASE_MS)
    assert w.sweep() == 1
    assert w.published.keys() == ["s31:40:0", "s31:40:0"]
    assert [m["k"] for m in _members(redis_client, "s31")] == ["e"]
    # Written again as another process would (a fold that lost the race): one member.
    turn = w.rt.ordering.take(redis_client, "s31")
    assert turn.kind == "busy"
    assert len(_members(redis_client, "s31")) == 1


def test_handler_runs_are_on_the_timeline_with_their_duration_from_finish(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s32", 0, 31))  # EVERY and UPLOADED
    store(redis_client, body("s32", 1))
    w.take_in()
    args = w.published.tasks[0][1]
    sid, member, key = args[0], args[1], args[2]
    assert w.dispatcher.handler_start(sid, member, key, EVERY, "a")
    w.dispatcher.handler_done(sid, member, key, EVERY, "a", duration_ms=12.345)
    flag = recordings_index.flag_index("deadletters")
    assert redis_client.zscore(flag, "s32") is None
    assert w.dispatcher.handler_start(sid, member, key, UPLOADED, "b")
    failure = Failure(reason="handler_failed", detail="Traceback ...",
                      exception="ValueError: " + "é" * 400)
    nxt = w.dispatcher.handler_done(sid, member, key, UPLOADED, "b", failure,
                                    duration_ms=3.0)
    # A second report of either (a retry of the call whose reply was lost): stale.
    w.dispatcher.handler_done(sid, member, key, UPLOADED, "b", failure, duration_ms=3.0)
    step = _timeline(redis_client, "s32")[0]
    assert step.event is not None and step.event["type"] == 31
    runs = {r["handler"]: r for r in step.runs}
    assert len(step.runs) == 2
    assert (runs[EVERY]["outcome"], runs[EVERY]["ms"], runs[EVERY]["at_ms"],
            runs[EVERY]["redriven"], runs[EVERY]["exception"]) == (
        "done", 12.35, w.clock.ms, False, "")
    bad = runs[UPLOADED]
    assert (bad["outcome"], bad["ms"]) == ("handler_failed", 3.0)
    # Cut to 500 bytes at a character boundary (still valid UTF-8 JSON).
    assert bad["exception"].startswith("ValueError: é") and len(bad["exception"]) < 500
    assert redis_client.zscore(flag, "s32") == w.clock.ms
    # The record's next save (event 1's fold) keeps the flag (the index's ZADD XX).
    w.dispatcher.dispatch(sid, nxt)
    assert w.published.keys()[-1] == "s32:40:1"
    assert sorted(_timeline(redis_client, "s32")) == [0, 1]
    assert redis_client.zscore(flag, "s32") is not None


def test_a_lost_handler_is_on_the_timeline_and_flags_its_recording(
        w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body("s33", 0))
    store(redis_client, body("s33", 1))
    w.take_in()
    flag = recordings_index.flag_index("deadletters")
    deadline = w.clock.ms + DEADLINE_S * 1000
    while w.clock.ms < deadline:  # never started: published again meanwhile, then lost
        w.clock.ms = min(timer_of(redis_client, "s33") or deadline, deadline)
        w.sweep()
    assert [d.reason for d in deadletters.list_(redis_client)] == ["lost"]
    step = _timeline(redis_client, "s33")[0]
    assert step.event is not None
    ((run),) = step.runs
    assert (run["handler"], run["outcome"], run["ms"], run["at_ms"]) == (
        EVERY, "lost", None, deadline)
    assert "never started within HANDLER_DEADLINE_S=60" in run["detail"]
    # Set (then refreshed by event 1's fold, which the sweep published right after).
    assert redis_client.zscore(flag, "s33") is not None
    assert _timeline(redis_client, "s33")[1].runs == []  # 1's turn has just begun


def test_an_unordered_event_has_no_timeline(w: World, redis_client: redis.Redis) -> None:
    store(redis_client, body(None, None, 40, notice_id="n-30"))
    w.take_in()
    w.run(w.published.tasks[0][1])
    assert redis_client.exists(keys.recording_timeline("notice:n-30")) == 0
    assert redis_client.keys(keys.recording_timeline("*")) == []


def test_a_body_left_for_a_retry_is_logged_with_its_recording(
        w: World, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A body whose script failed (a Redis error for that call alone) is logged as
    left for a retry, with the sid, sequence and noticeId of its event, as every
    other line about an event is."""
    from structlog.contextvars import merge_contextvars
    from structlog.testing import capture_logs

    from agora_callbacks.workers import intake as intake_module

    store(redis_client, body("rec-retry", 4, notice_id="notice-retry"))
    monkeypatch.setattr(intake_module.scripts, "run",
                        lambda client, calls: [redis.ResponseError("script failed")] * len(calls))
    with capture_logs(processors=[merge_contextvars]) as lines:
        assert w.take_in() == 0
    (left,) = [line for line in lines
               if line["event"] == "could not settle a body, left for a retry"]
    assert (left["sid"], left["sequence"], left["notice_id"]) == ("rec-retry", 4, "notice-retry")


def test_the_intake_logs_an_outage_once_and_its_end_once(
        settings: Settings, redis_server: Any, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = Lines()
    monkeypatch.setattr(intake_module, "log", log)
    client = redis.Redis.from_url(redis_server.url, socket_timeout=0.5,
                                  socket_connect_timeout=0.5)
    w = build(settings, client)
    rounds = [0]

    def beat() -> None:
        rounds[0] += 1

    stop = threading.Event()
    thread = threading.Thread(target=w.intake.run, args=(stop, beat), daemon=True)
    thread.start()
    try:
        wait_for(lambda: rounds[0] >= 3, timeout=10, message="the intake going round")
        redis_server.stop()
        seen = rounds[0]
        wait_for(lambda: rounds[0] >= seen + 6, timeout=30,
                 message="six rounds while Redis is down")
        failed = [line for line in log.lines if "failed" in line[1]]
        assert [(level, event) for level, event, _ in failed] == [
            ("exception", "intake round failed; trying again")], log.lines
        redis_server.start()
        wait_for(lambda: "intake round succeeds again" in log.events(), timeout=30,
                 message="the intake going round again")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    (_, _, fields), = [line for line in log.lines if line[1] == "intake round succeeds again"]
    assert fields["failed_rounds"] >= 5
    assert [e for e in log.events() if "failed" in e or "failing" in e] == [
        "intake round failed; trying again"]


def test_a_turn_s_decisions_carry_its_event_wherever_they_run(
        w: World, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold's retry lines, its failure lines and the publish's run in the intake,
    the sweep or a pool process's after-handler thread, outside any handler's bound
    context: each line carries the turn's sid, sequence and notice_id."""
    from agora_callbacks.workers.builtin import lifecycle

    seen: list[dict[str, Any]] = []
    real = lifecycle.fold_event

    def fold_once_redis_is_back(*args: Any, **kwargs: Any) -> Any:
        seen.append(dict(structlog.contextvars.get_contextvars()))
        if len(seen) == 1:  # a retry line, then the fold
            raise redis.ConnectionError("Redis away for a moment")
        return real(*args, **kwargs)

    monkeypatch.setattr(lifecycle, "fold_event", fold_once_redis_is_back)
    store(redis_client, body("s40", 0, notice_id="n-s40-0"))
    structlog.contextvars.clear_contextvars()
    w.take_in()
    assert [(c.get("sid"), c.get("sequence"), c.get("notice_id")) for c in seen] == [
        ("s40", 0, "n-s40-0")] * 2
    assert structlog.contextvars.get_contextvars() == {}  # nothing left bound after it
