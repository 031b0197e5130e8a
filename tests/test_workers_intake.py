"""Intake in-process: parse, dead-letter, dedupe, admit, publish, acknowledge.

The handler tasks are published to the real broker (the test's Redis) and read
back from the Celery queue instead of being run.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from conftest import wait_for
from workers_support import body, store

from agora_callbacks import deadletters, keys
from agora_callbacks.settings import Settings
from workers import REGISTRY, on_event, runtime, scripts
from workers.app import celery_app
from workers.dispatch import Dispatcher
from workers.intake import Intake
from workers.outbox import Outbox
from workers.timers import sweep

HOLD_MS = 300


@on_event("*", name="test_intake.every")
def every(event: Any) -> None:  # pragma: no cover - published, not run, here
    pass


@on_event("uploaded", name="test_intake.uploaded")
def uploaded(event: Any) -> None:  # pragma: no cover
    pass


@pytest.fixture
def intake(settings: Settings, redis_client: redis.Redis) -> Iterator[Intake]:
    # A hold shorter than CLAIM_IDLE_MS on purpose: the rules between settings are off.
    s = Settings.from_env({"REDIS_URL": settings.redis_url, "REORDER_HOLD_MS": str(HOLD_MS),
                           "LOG_FORMAT": "json"}, check=False)
    runtime.configure(s)
    use_broker(s.redis_url)
    it = Intake(runtime.get(), consumer="test")
    it.ensure_group()
    yield it
    REGISTRY.handlers.get("test_intake.every")  # keep registered for other tests


def use_broker(url: str) -> None:
    """Point the (already created) Celery app at the test's Redis."""
    if celery_app.conf.broker_url == url:
        return
    celery_app.conf.broker_url = url
    if celery_app._pool is not None:
        celery_app._pool.force_close_all()
        celery_app._pool = None
    celery_app.amqp._producer_pool = None


def published(client: redis.Redis) -> list[tuple[str, list[Any]]]:
    """(task name, args) of the messages waiting in the default Celery queue."""
    out = []
    for raw in reversed(client.lrange("celery", 0, -1)):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        out.append((message["headers"]["task"], args))
    return out


def run_intake(intake: Intake) -> int:
    return intake.process(intake.read(block_ms=10))


def test_ordered_events_are_admitted_deduped_and_dispatched_in_turn(
        intake: Intake, redis_client: redis.Redis) -> None:
    store(redis_client, body("s1", 0))
    store(redis_client, body("s1", 1))
    store(redis_client, body("s1", 0))  # redundant copy: new noticeId, same key
    assert run_intake(intake) == 3
    sent = published(redis_client)
    assert [name for name, _ in sent] == ["test_intake.every"]
    sid, member, key, late, gap, meta, raw = sent[0][1]
    assert (sid, key, late, gap) == ("s1", "s1:40:0", False, None)
    assert json.loads(raw)["payload"]["sequence"] == 0 and meta["signature"] == "v2"
    assert redis_client.xlen(keys.INBOX) == 0
    assert redis_client.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0
    counters = redis_client.hgetall(keys.COUNTERS)
    assert counters[b"admitted"] == b"2" and counters[b"duplicates"] == b"1"
    # The handler of event 0 finishes: event 1 is dispatched from there.
    assert redis_client.hget(keys.recording_order("s1"), "state") == b"dispatched"
    Dispatcher(runtime.get()).handler_done("s1", member, "test_intake.every")
    assert [a[2] for _, a in published(redis_client)] == ["s1:40:0", "s1:40:1"]
    # Event 1's turn was committed in the same transaction as its publish.
    order = redis_client.hgetall(keys.recording_order("s1"))
    assert order[b"cur"].startswith(b"1|") and order[b"state"] == b"dispatched"


def test_publishes_are_collected_for_the_callers_transaction(intake: Intake,
                                                              redis_client: redis.Redis) -> None:
    from workers.outbox import publishing

    with publishing() as (producer, outbox):
        every.task.apply_async(args=["s", "m", "k", False, None, {}, "{}"], producer=producer)
        assert published(redis_client) == []  # not sent yet: collected
    assert [name for name, _ in outbox.commands] == ["lpush"]
    scripts.run(redis_client, outbox.calls(), atomic=True)
    assert [n for n, _ in published(redis_client)] == ["test_intake.every"]


def test_all_matching_handlers_are_published(intake: Intake, redis_client: redis.Redis) -> None:
    store(redis_client, body("s2", 0, 31))
    run_intake(intake)
    assert sorted(n for n, _ in published(redis_client)) == ["test_intake.every",
                                                             "test_intake.uploaded"]
    assert redis_client.scard(keys.recording_turn("s2")) == 2


def test_invalid_and_stale_bodies_are_dead_lettered_with_their_bytes(
        intake: Intake, redis_client: redis.Redis) -> None:
    bad = b'{"noticeId": 5'
    old = body("s3", 0, notify_ms=int(time.time() * 1000) - 2 * 86_400_000)
    store(redis_client, bad)
    store(redis_client, old)
    store(redis_client, old, origin="dlq:1-0")  # re-injected by an operator: accepted
    assert run_intake(intake) == 3
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason) for d in letters] == [("body", "invalid_json"), ("body", "stale")]
    assert letters[0].body == bad and letters[1].body == old
    assert letters[0].meta["signature"] == "v2" and letters[0].at_ms > 0
    assert [a[2] for _, a in published(redis_client)] == ["s3:40:0"]
    assert redis_client.xlen(keys.INBOX) == 0


def test_unordered_events_are_deduped_by_notice_id(intake: Intake,
                                                   redis_client: redis.Redis) -> None:
    store(redis_client, body(None, None, 40, notice_id="n-1"))
    store(redis_client, body(None, None, 40, notice_id="n-1"))
    store(redis_client, body(None, None, 40, notice_id="n-2", product_id=1))
    run_intake(intake)
    sent = published(redis_client)
    assert [(a[0], a[1], a[2]) for _, a in sent] == [("", "", "notice:n-1"),
                                                     ("", "", "notice:n-2")]


def test_unknown_event_types_still_flow(intake: Intake, redis_client: redis.Redis) -> None:
    store(redis_client, body("s4", 0, 777))
    run_intake(intake)
    assert [a[2] for _, a in published(redis_client)] == ["s4:777:0"]


def test_a_gap_is_skipped_by_the_timer_sweep(intake: Intake, redis_client: redis.Redis) -> None:
    store(redis_client, body("s5", 0))
    run_intake(intake)
    member = published(redis_client)[0][1][1]
    Dispatcher(runtime.get()).handler_done("s5", member, "test_intake.every")
    store(redis_client, body("s5", 2))
    run_intake(intake)
    assert len(published(redis_client)) == 1
    assert redis_client.zscore(keys.TIMERS, "s5") is not None
    deadline = time.monotonic() + 5
    while len(published(redis_client)) < 2 and time.monotonic() < deadline:
        sweep(intake.dispatcher)
        time.sleep(0.02)
    _, _, key, late, gap, _, _ = published(redis_client)[1][1]
    assert (key, late, gap) == ("s5:40:2", False, [1, 1])


def test_an_entry_left_by_a_dead_consumer_is_taken_over(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    store(redis_client, body("s6", 0))
    # Another consumer reads it and dies without settling it.
    redis_client.xreadgroup(keys.INBOX_GROUP, "dead", {keys.INBOX: ">"}, count=10)
    assert run_intake(intake) == 0
    s = Settings.from_env({"REDIS_URL": settings.redis_url, "CLAIM_IDLE_MS": "50"})
    runtime.configure(s)
    taker = Intake(runtime.get(), consumer="taker")
    deadline = time.monotonic() + 5
    while not published(redis_client) and time.monotonic() < deadline:
        taker.process(taker.autoclaim())
        time.sleep(0.02)
    assert [a[2] for _, a in published(redis_client)] == ["s6:40:0"]
    assert redis_client.xlen(keys.INBOX) == 0


def _fast_runtime(settings: Settings, **env: str) -> runtime.Runtime:
    # One timeout shrunk on purpose: the rules between settings are off.
    s = Settings.from_env({"REDIS_URL": settings.redis_url, "LOG_FORMAT": "json", **env},
                          check=False)
    runtime.configure(s)
    return runtime.get()


def _sweep_until(dispatcher: Dispatcher, done: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        sweep(dispatcher)
        time.sleep(0.02)


def test_a_turn_taken_by_a_dispatcher_that_died_is_taken_again(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    rt = _fast_runtime(settings, DISPATCH_LEASE_MS="100")
    from workers.dispatch import now_ms, q_timer
    from workers.ordering import Record

    # A worker admitted event 0 (its turn is now "taking") and died before
    # publishing; only the timer it armed first is left.
    record = Record(handlers=("test_intake.every",), key="s7:40:0", meta={}, entry_id="1-0",
                    body=body("s7", 0))
    q_timer(redis_client, "s7", now_ms() + 100)
    assert rt.ordering.admit(redis_client, "s7", "40:0", 0, "1-0", record).turn.dispatch  # type: ignore[union-attr]
    assert published(redis_client) == []
    _sweep_until(Dispatcher(rt), lambda: published(redis_client))
    assert [a[2] for _, a in published(redis_client)] == ["s7:40:0"]
    assert redis_client.hget(keys.recording_order("s7"), "state") == b"dispatched"


def test_handlers_that_never_report_are_dead_lettered_as_lost(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    rt = _fast_runtime(settings, HANDLER_DEADLINE_S="1")
    it = Intake(rt, consumer="test")
    store(redis_client, body("s8", 0))
    store(redis_client, body("s8", 1))
    it.process(it.read(block_ms=10))
    assert [a[2] for _, a in published(redis_client)] == ["s8:40:0"]
    # Event 0's handler task is never run: after the deadline it is lost.
    _sweep_until(Dispatcher(rt), lambda: len(published(redis_client)) == 2, timeout=10)
    assert [a[2] for _, a in published(redis_client)] == ["s8:40:0", "s8:40:1"]
    letters = deadletters.list_(redis_client)
    assert [(d.kind, d.reason, d.handler, d.key) for d in letters] == [
        ("handler", "lost", "test_intake.every", "s8:40:0")]


def test_a_pool_process_that_died_after_ending_a_turn_is_replaced_by_the_sweep(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    # finish_handler ended event 0's turn and took event 1 (the task is then
    # acknowledged); the process died before its after-handler thread published
    # event 1: the sweep publishes it after the lease.
    rt = _fast_runtime(settings, DISPATCH_LEASE_MS="100")
    it = Intake(rt, consumer="test")
    store(redis_client, body("s9", 0))
    store(redis_client, body("s9", 1))
    it.process(it.read(block_ms=10))
    member = published(redis_client)[0][1][1]
    turn = Dispatcher(rt).finish_handler("s9", member, "test_intake.every")
    assert turn is not None and turn.member.startswith("1|")
    assert len(published(redis_client)) == 1
    _sweep_until(Dispatcher(rt), lambda: len(published(redis_client)) == 2)
    assert [a[2] for _, a in published(redis_client)] == ["s9:40:0", "s9:40:1"]
    assert redis_client.hget(keys.recording_order("s9"), "state") == b"dispatched"


def test_the_after_handler_thread_publishes_the_next_event(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    import threading

    from workers.task import _AfterHandler

    rt = _fast_runtime(settings)
    it = Intake(rt, consumer="test")
    for seq in range(3):
        store(redis_client, body("s10", seq))
    it.process(it.read(block_ms=10))
    dispatcher = Dispatcher(rt)
    threads: list[str] = []
    real = dispatcher.dispatch_next

    def noting(sid: str, turn: Any) -> None:
        threads.append(threading.current_thread().name)
        real(sid, turn)

    dispatcher.dispatch_next = noting  # type: ignore[method-assign]
    after = _AfterHandler()
    # Off (not a pool process): settled inline.
    turn = dispatcher.finish_handler("s10", published(redis_client)[0][1][1], "test_intake.every")
    assert turn is not None
    after.submit(dispatcher, "s10", turn)
    assert threads == [threading.current_thread().name]
    assert len(published(redis_client)) == 2
    # On: settled by its thread; drain waits for it.
    after.enable()
    turn = dispatcher.finish_handler("s10", published(redis_client)[1][1][1], "test_intake.every")
    assert turn is not None
    after.submit(dispatcher, "s10", turn)
    after.drain()
    assert threads[1].startswith("agora-after-handler")
    assert [a[2] for _, a in published(redis_client)] == ["s10:40:0", "s10:40:1", "s10:40:2"]
    assert redis_client.hget(keys.recording_order("s10"), "state") == b"dispatched"


def test_a_dispatched_turn_leaves_its_timer_at_the_handler_deadline(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    # While handlers run within their deadline, the sweep has nothing to look at.
    rt = _fast_runtime(settings)
    it = Intake(rt, consumer="test")
    store(redis_client, body("s11", 0))
    store(redis_client, body("s11", 1))
    it.process(it.read(block_ms=10))
    seconds, micros = redis_client.time()
    now = seconds * 1000 + micros // 1000
    deadline = rt.ordering.deadline_ms
    score = redis_client.zscore(keys.TIMERS, "s11")
    assert score is not None and now - 5000 < score - deadline <= now
    member = published(redis_client)[0][1][1]
    Dispatcher(rt).handler_done("s11", member, "test_intake.every")
    assert [a[2] for _, a in published(redis_client)] == ["s11:40:0", "s11:40:1"]
    score = redis_client.zscore(keys.TIMERS, "s11")
    assert score is not None and now - 5000 < score - deadline <= now + 5000
    assert sweep(Dispatcher(rt)) == 0


class _Delayed:
    """Runs ``fn`` on a thread whose transactions (``scripts.run(atomic=True)``: the
    publish-with-commit) wait until ``release``, as if that thread were delayed;
    every other thread's calls run as usual."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fn: Any) -> None:
        import threading

        self.waiting = threading.Event()
        self._go = threading.Event()
        self.error: BaseException | None = None
        real = scripts.run

        def run(client: redis.Redis, calls: Any, atomic: bool = False) -> list[Any]:
            if atomic and threading.current_thread() is self._thread:
                self.waiting.set()
                assert self._go.wait(20), "never released"
            return real(client, calls, atomic)

        def main() -> None:
            try:
                fn()
            except BaseException as exc:  # pragma: no cover - reported by release
                self.error = exc

        monkeypatch.setattr(scripts, "run", run)
        self._thread = threading.Thread(target=main, name="delayed", daemon=True)
        self._thread.start()
        wait_for(self.waiting.is_set, timeout=5, message="the delayed transaction")

    def release(self) -> None:
        """Let the delayed transaction go, and wait for the thread to end."""
        self._go.set()
        self._thread.join(20)
        assert not self._thread.is_alive() and self.error is None, self.error


@contextmanager
def _publishing_at_once() -> Iterator[tuple[Any, Outbox]]:
    """``outbox.publishing`` as on a kombu without the publish-batch hook: a producer
    that sends each publish at once, and an Outbox that stays empty."""
    with celery_app.producer_or_acquire() as producer:
        yield producer, Outbox()


def _copies(client: redis.Redis, key: str) -> int:
    return [a[2] for _, a in published(client)].count(key)


def _counter(client: redis.Redis, name: str) -> int:
    return int(client.hget(keys.COUNTERS, name) or 0)


def test_a_publish_delayed_past_its_lease_does_not_dispatch_the_event_twice(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A handler of event 0 finished and took event 1 under its lease; the thread
    # publishing event 1 is delayed past DISPATCH_LEASE_MS, the sweep takes event 1
    # again and publishes it; then the delayed transaction arrives.
    rt = _fast_runtime(settings, DISPATCH_LEASE_MS="100")
    it = Intake(rt, consumer="test")
    store(redis_client, body("s12", 0))
    store(redis_client, body("s12", 1))
    it.process(it.read(block_ms=10))
    member = published(redis_client)[0][1][1]
    dispatcher = Dispatcher(rt)
    turn = dispatcher.finish_handler("s12", member, "test_intake.every")
    assert turn is not None and turn.member.startswith("1|")
    delayed = _Delayed(monkeypatch, lambda: dispatcher.dispatch_next("s12", turn))
    assert _copies(redis_client, "s12:40:1") == 0
    wait_for(lambda: sweep(Dispatcher(rt)) and _copies(redis_client, "s12:40:1"),
             timeout=5, message="the sweep to publish event 1 again")
    delayed.release()
    assert _copies(redis_client, "s12:40:1") == 1
    assert redis_client.hget(keys.recording_order("s12"), "state") == b"dispatched"
    assert _counter(redis_client, "dispatched") == 2  # events 0 and 1, once each


def test_an_intake_publish_delayed_past_its_lease_does_not_dispatch_the_event_twice(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # An intake admitted event 0 (its turn taken) and its settling transaction is
    # delayed past the lease and CLAIM_IDLE_MS: another worker takes the entry over,
    # takes the turn again and publishes event 0; then the transaction arrives.
    rt = _fast_runtime(settings, DISPATCH_LEASE_MS="100", CLAIM_IDLE_MS="50")
    slow = Intake(rt, consumer="slow")
    store(redis_client, body("s13", 0))
    delayed = _Delayed(monkeypatch, lambda: slow.process(slow.read(block_ms=10)))
    assert _copies(redis_client, "s13:40:0") == 0
    taker = Intake(rt, consumer="taker")

    def taken_over() -> int:
        taker.process(taker.autoclaim())
        sweep(taker.dispatcher)
        return _copies(redis_client, "s13:40:0")

    wait_for(taken_over, timeout=5, message="another worker to publish event 0")
    delayed.release()
    assert _copies(redis_client, "s13:40:0") == 1
    assert redis_client.xlen(keys.INBOX) == 0
    assert redis_client.hget(keys.recording_order("s13"), "state") == b"dispatched"
    assert _counter(redis_client, "dispatched") == 1


def test_a_sweep_delayed_past_its_lease_does_not_dispatch_the_event_twice(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A dispatcher took event 0 and died; a sweep takes it again and is delayed
    # past the lease before its transaction; another sweep takes and publishes it.
    rt = _fast_runtime(settings, DISPATCH_LEASE_MS="100")
    from workers.dispatch import now_ms, q_timer
    from workers.ordering import Record

    record = Record(handlers=("test_intake.every",), key="s14:40:0", meta={}, entry_id="1-0",
                    body=body("s14", 0))
    q_timer(redis_client, "s14", now_ms() + 100)
    assert rt.ordering.admit(redis_client, "s14", "40:0", 0, "1-0", record).turn.dispatch  # type: ignore[union-attr]

    def sweep_once_taken() -> None:
        while not sweep(Dispatcher(rt)):
            time.sleep(0.01)

    delayed = _Delayed(monkeypatch, sweep_once_taken)
    assert _copies(redis_client, "s14:40:0") == 0
    # The delayed sweep's transaction did not move the timer: it fires again.
    wait_for(lambda: sweep(Dispatcher(rt)) and _copies(redis_client, "s14:40:0"),
             timeout=5, message="another sweep to publish event 0")
    delayed.release()
    assert _copies(redis_client, "s14:40:0") == 1
    assert redis_client.hget(keys.recording_order("s14"), "state") == b"dispatched"
    assert _counter(redis_client, "dispatched") == 1


def test_without_the_publish_batch_hook_publishes_are_sent_at_once(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback (a kombu without the hook): each publish is sent as it is made,
    # the commit (with its token) follows; nothing is collected.
    from workers import dispatch

    rt = _fast_runtime(settings)
    it = Intake(rt, consumer="test")
    store(redis_client, body("s15", 0))
    store(redis_client, body("s15", 1))
    it.process(it.read(block_ms=10))
    member = published(redis_client)[0][1][1]
    dispatcher = Dispatcher(rt)
    turn = dispatcher.finish_handler("s15", member, "test_intake.every")
    assert turn is not None
    monkeypatch.setattr(dispatch, "publishing", _publishing_at_once)
    delayed = _Delayed(monkeypatch, lambda: dispatcher.dispatch_next("s15", turn))
    assert _copies(redis_client, "s15:40:1") == 1  # sent before the commit
    delayed.release()
    assert _copies(redis_client, "s15:40:1") == 1
    assert redis_client.hget(keys.recording_order("s15"), "state") == b"dispatched"


def test_a_publish_with_commit_survives_a_flushed_script_cache(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    rt = _fast_runtime(settings)
    it = Intake(rt, consumer="test")
    store(redis_client, body("s16", 0))
    store(redis_client, body("s16", 1))
    it.process(it.read(block_ms=10))
    member = published(redis_client)[0][1][1]
    dispatcher = Dispatcher(rt)
    turn = dispatcher.finish_handler("s16", member, "test_intake.every")
    assert turn is not None
    redis_client.script_flush()  # Redis restarted: the transaction meets NOSCRIPT
    dispatcher.dispatch_next("s16", turn)
    assert _copies(redis_client, "s16:40:1") == 1
    assert redis_client.hget(keys.recording_order("s16"), "state") == b"dispatched"
    assert _counter(redis_client, "dispatched") == 2


def _owner(client: redis.Redis, entry_id: str) -> str | None:
    rows: Any = client.xpending_range(keys.INBOX, keys.INBOX_GROUP, entry_id, entry_id, 1)
    return rows[0]["consumer"].decode() if rows else None


def test_an_unordered_entry_settled_by_a_consumer_that_lost_it_is_dispatched_once(
        settings: Settings, intake: Intake, redis_client: redis.Redis) -> None:
    # Unordered events (no sid) have no turn: their publishes go with the settling
    # of their inbox entry. A consumer read the entry and was delayed past
    # CLAIM_IDLE_MS; another took it over; the first one now settles it, then the
    # one that took it over does.
    rt = _fast_runtime(settings, CLAIM_IDLE_MS="50")
    slow, taker = Intake(rt, consumer="slow"), Intake(rt, consumer="taker")
    entry_id = store(redis_client, body(None, None, 40, notice_id="n-late"))
    entries = slow.read(block_ms=10)
    assert [e.entry_id for e in entries] == [entry_id]
    taken: Any = wait_for(taker.autoclaim, timeout=5, message="the entry to be taken over")
    assert _owner(redis_client, entry_id) == "taker"
    slow.process(entries)
    # The late consumer no longer owns the entry: it neither publishes nor
    # acknowledges it (the owner settles it).
    assert _copies(redis_client, "notice:n-late") == 0
    assert _owner(redis_client, entry_id) == "taker"
    taker.process(taken)
    assert _copies(redis_client, "notice:n-late") == 1
    assert redis_client.xlen(keys.INBOX) == 0 and _owner(redis_client, entry_id) is None
    assert _counter(redis_client, "admitted") == 1
    assert _counter(redis_client, "dispatched") == 1


def test_an_unordered_publish_delayed_past_claim_idle_does_not_dispatch_the_event_twice(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The other order: the delayed consumer's settling transaction arrives after
    # the worker that took the entry over published and settled it. A redundant
    # copy of the notice (another entry) arrives meanwhile: dropped, not lost.
    rt = _fast_runtime(settings, CLAIM_IDLE_MS="50")
    slow, taker = Intake(rt, consumer="slow"), Intake(rt, consumer="taker")
    store(redis_client, body(None, None, 40, notice_id="n-slow"))
    delayed = _Delayed(monkeypatch, lambda: slow.process(slow.read(block_ms=10)))
    assert _copies(redis_client, "notice:n-slow") == 0
    store(redis_client, body(None, None, 40, notice_id="n-slow"))

    def taken_over() -> int:
        taker.process(taker.autoclaim())
        taker.process(taker.read(block_ms=10))
        return _copies(redis_client, "notice:n-slow")

    wait_for(taken_over, timeout=5, message="another worker to publish the event")
    delayed.release()
    assert _copies(redis_client, "notice:n-slow") == 1
    assert redis_client.xlen(keys.INBOX) == 0
    assert redis_client.xpending(keys.INBOX, keys.INBOX_GROUP)["pending"] == 0
    assert _counter(redis_client, "admitted") == 1
    assert _counter(redis_client, "dispatched") == 1
    assert _counter(redis_client, "duplicates") == 1


@pytest.mark.parametrize("late_first", [False, True], ids=["late-after", "late-before"])
def test_a_lost_turn_taken_again_is_dead_lettered_once(
        settings: Settings, intake: Intake, redis_client: redis.Redis, late_first: bool) -> None:
    # Event 0's handler never reported: a sweep took its turn as lost and was
    # delayed past DISPATCH_LEASE_MS; another sweep took it again as lost. Both
    # settle it, in either order: one set of dead letters, the turn ends once,
    # event 1 is dispatched once.
    from workers.dispatch import now_ms
    from workers.ordering import Record

    rt = _fast_runtime(settings)
    ordering, lease, deadline = rt.ordering, rt.ordering.lease_ms, rt.ordering.deadline_ms
    t0 = now_ms()

    def record(seq: int) -> Record:
        return Record(handlers=("test_intake.every",), key=f"s17:40:{seq}", meta={},
                      entry_id=f"{seq + 1}-0", body=body("s17", seq))

    first = ordering.admit(redis_client, "s17", "40:0", 0, "1-0", record(0), now_ms=t0).turn
    assert first is not None and first.dispatch
    assert ordering.commit(redis_client, "s17", first.member, first.token, now_ms=t0)
    ordering.admit(redis_client, "s17", "40:1", 1, "2-0", record(1), now_ms=t0 + 1)
    late = ordering.take(redis_client, "s17", now_ms=t0 + deadline + 1)
    again = ordering.take(redis_client, "s17", now_ms=t0 + deadline + lease + 2)
    assert late.kind == again.kind == "lost" and late.member == again.member == first.member
    dispatcher = Dispatcher(rt)
    for turn in ([late, again] if late_first else [again, late]):
        dispatcher.dispatch_next("s17", turn)
    letters = deadletters.list_(redis_client)
    assert [(d.reason, d.handler, d.key) for d in letters] == [
        ("lost", "test_intake.every", "s17:40:0")]
    assert _counter(redis_client, "deadletters_handler") == 1
    assert _copies(redis_client, "s17:40:1") == 1
    order = redis_client.hgetall(keys.recording_order("s17"))
    assert order[b"cur"].startswith(b"1|") and order[b"state"] == b"dispatched"


def test_without_the_publish_batch_hook_an_unordered_entry_is_still_acknowledged_once(
        settings: Settings, intake: Intake, redis_client: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback: publishes are sent as they are made, before the settling
    # script, so a consumer that lost its entry has already sent its copy (at
    # least once); the entry is still settled (counted, acknowledged) once.
    from workers import intake as intake_module

    monkeypatch.setattr(intake_module, "publishing", _publishing_at_once)
    rt = _fast_runtime(settings, CLAIM_IDLE_MS="50")
    slow, taker = Intake(rt, consumer="slow"), Intake(rt, consumer="taker")
    entry_id = store(redis_client, body(None, None, 40, notice_id="n-hookless"))
    entries = slow.read(block_ms=10)
    taken: Any = wait_for(taker.autoclaim, timeout=5, message="the entry to be taken over")
    slow.process(entries)
    assert _copies(redis_client, "notice:n-hookless") == 1  # sent, not settled
    assert _owner(redis_client, entry_id) == "taker"
    assert taker.process(taken) == 1
    assert _copies(redis_client, "notice:n-hookless") == 2
    assert redis_client.xlen(keys.INBOX) == 0
    assert _counter(redis_client, "dispatched") == 1
