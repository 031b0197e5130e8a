"""``@on_recording``: registration rules, the public API, the fence that runs a
phase's hook once whatever copies of its task are delivered, and the ``hook`` dead
letter of a hook that fails for good (Celery's ``apply``, in this process, on the
test's Redis)."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import prometheus_client
import pytest
import redis
from billiard.einfo import ExceptionInfo
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded, TimeLimitExceeded

import agora_callbacks
from agora_callbacks import deadletters, recordings_index
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.settings import Settings
from agora_callbacks.workers import hooks, runtime
from agora_callbacks.workers.hooks import HOOKS, hook_key, on_recording

SID = "40" * 16


@pytest.fixture
def on_test_redis(settings: Settings) -> Iterator[None]:
    runtime.configure(settings)
    yield
    runtime.configure(Settings.from_env())


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        HOOKS.remove(name)


def test_public_api_and_refusals(registered: list[str]) -> None:
    assert agora_callbacks.on_recording is on_recording
    with pytest.raises(ValueError, match="unknown phase 'ended'"):
        on_recording("ended")
    with pytest.raises(TypeError, match="needs a phase"):
        on_recording()
    with pytest.raises(ValueError, match="time_limit=9999"):
        on_recording("failed", name="test.too_long", time_limit=9999)(lambda r: None)

    @on_recording("failed", "stalled", name="test.hook.names")
    def alert(recording: dict[str, Any], info: dict[str, Any]) -> None: ...

    registered.append("test.hook.names")
    assert hooks.names_for("failed") == ("test.hook.names",)
    assert hooks.names_for("stalled") == ("test.hook.names",)
    assert hooks.names_for("started") == ()


def test_a_hook_cannot_take_a_handler_s_task_name_nor_the_reverse(
        registered: list[str]) -> None:
    """Celery keeps the first task of a name (and only warns about a second): a hook
    named like a handler would never run, its phases reaching the handler."""
    from agora_callbacks.workers import REGISTRY, on_event

    def files(event: Any) -> None: ...

    def alert(recording: dict[str, Any]) -> None: ...

    on_event(40, name="test.shared.name")(files)
    try:
        with pytest.raises(ValueError, match=r"^a task named 'test.shared.name' is already "
                           r"registered for .*\.files .*another name=$"):
            on_recording("failed", name="test.shared.name")(alert)
        assert hooks.names_for("failed") == ()
    finally:
        REGISTRY.remove("test.shared.name")

    on_recording("stalled", name="test.shared.hook")(alert)
    registered.append("test.shared.hook")

    def other(event: Any) -> None: ...

    with pytest.raises(ValueError, match=r"already registered for .*\.alert "):
        on_event(41, name="test.shared.hook")(other)
    assert REGISTRY.get("test.shared.hook") is None

    # One function both a handler and a hook under its default name: two tasks of
    # one name all the same.
    def both(event: Any) -> None: ...

    on_event(42)(both)
    try:
        with pytest.raises(ValueError, match=r"already registered for .*\.both "):
            on_recording("finished")(both)
    finally:
        REGISTRY.remove(both.task.name)


def test_a_phase_hook_runs_once_whatever_copies_arrive(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    @on_recording("finished", name="test.hook.once")
    def done(recording: dict[str, Any], phase: str, info: dict[str, Any]) -> None:
        calls.append((phase, info))

    registered.append("test.hook.once")
    record = {"sid": SID, "lifecycle": {"fired": {"finished": {"sequence": 7}}}}
    args = [SID, "finished", {"sequence": 7}, record]
    task: Any = done.task  # type: ignore[attr-defined]
    task.apply(args=args, task_id="copy-1")
    assert calls == [("finished", {"sequence": 7})]
    task.apply(args=args, task_id="copy-2")  # published again: skipped
    assert len(calls) == 1
    # The same task delivered again after its run (its worker died before the
    # acknowledgement): skipped too, the run is over.
    task.apply(args=args, task_id="copy-1")
    assert len(calls) == 1
    key = hook_key(SID, "finished", "test.hook.once")
    assert redis_client.get(key) == b"done"
    assert 0 < redis_client.ttl(key) <= Settings.from_env().record_ttl_s
    assert deadletters.count(redis_client) == 0


def test_a_retried_hook_runs_again_under_its_task_id_until_it_succeeds(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    attempts: list[int] = []

    @on_recording("finished", name="test.hook.retried", autoretry_for=(RuntimeError,),
                  max_retries=3, default_retry_delay=0)
    def flaky(recording: dict[str, Any]) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("storage away")

    registered.append("test.hook.retried")
    task: Any = flaky.task  # type: ignore[attr-defined]
    result = task.apply(args=[SID, "finished", {}, {"sid": SID}], task_id="copy-1")
    assert result.state == "SUCCESS" and len(attempts) == 3
    assert redis_client.get(hook_key(SID, "finished", "test.hook.retried")) == b"done"
    assert deadletters.count(redis_client) == 0


def hook_letters(client: redis.Redis) -> list[deadletters.DeadLetter]:
    return [d for d in deadletters.list_(client) if d.kind == deadletters.HOOK]


def dead_lettered(reason: str) -> float:
    return prometheus_client.REGISTRY.get_sample_value(
        "acb_deadlettered_total", {"kind": "hook", "reason": reason}) or 0.0


def test_a_hook_that_fails_for_good_is_dead_lettered_once(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    calls: list[str] = []

    @on_recording("files_ready", name="test.hook.fails", autoretry_for=(OSError,),
                  max_retries=2, default_retry_delay=0)
    def copy_files(recording: dict[str, Any], info: dict[str, Any]) -> None:
        calls.append(info["files"][0])
        raise OSError("bucket unreachable")

    registered.append("test.hook.fails")
    info = {"at_ms": 1700000000000, "sequence": 9, "source": "events", "files": ["a.m3u8"]}
    record = {"sid": SID, "files": [{"file_name": "a.m3u8"}], "note": "été"}
    args = [SID, "files_ready", info, record]
    task: Any = copy_files.task  # type: ignore[attr-defined]
    before = dead_lettered("handler_failed")

    result = task.apply(args=args, task_id="copy-1")
    assert result.state == "FAILURE" and len(calls) == 3  # the first run, two retries
    (letter,) = hook_letters(redis_client)
    assert letter.reason == "handler_failed" and letter.handler == "test.hook.fails"
    assert letter.exception == "OSError: bucket unreachable"
    assert "Traceback" in letter.detail and "bucket unreachable" in letter.detail
    assert json.loads(letter.body) == record
    assert letter.extra == {"sid": SID, "phase": "files_ready", "info": info}
    assert letter.key == "" and letter.meta == {}
    key = hook_key(SID, "files_ready", "test.hook.fails")
    assert redis_client.get(key) == b"failed" and redis_client.ttl(key) > 0
    assert redis_client.zscore(recordings_index.flag_index("deadletters"), SID) is not None
    assert dead_lettered("handler_failed") == before + 1

    task.apply(args=args, task_id="copy-1")  # redelivered after the failure: skipped
    task.apply(args=args, task_id="copy-2")  # published again: skipped
    assert len(calls) == 3 and len(hook_letters(redis_client)) == 1
    assert dead_lettered("handler_failed") == before + 1


def test_a_rejected_or_timed_out_hook_is_dead_lettered(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    @on_recording("failed", name="test.hook.rejects")
    def refuse(recording: dict[str, Any]) -> None:
        raise Reject("not for this tenant", requeue=False)

    @on_recording("stalled", name="test.hook.soft_limit")
    def slow(recording: dict[str, Any]) -> None:
        raise SoftTimeLimitExceeded()

    @on_recording("started", name="test.hook.ignores")
    def ignore(recording: dict[str, Any]) -> None:
        raise Ignore()

    registered.extend(["test.hook.rejects", "test.hook.soft_limit", "test.hook.ignores"])
    record = {"sid": SID}
    rejected = dead_lettered("rejected")
    refuse.task.apply(args=[SID, "failed", {"reason": {"code": "x"}}, record],  # type: ignore[attr-defined]
                      task_id="r-1")
    slow.task.apply(args=[SID, "stalled", {}, record], task_id="s-1")  # type: ignore[attr-defined]
    ignore.task.apply(args=[SID, "started", {}, record], task_id="i-1")  # type: ignore[attr-defined]

    letters = {d.handler: d for d in hook_letters(redis_client)}
    assert sorted(letters) == ["test.hook.rejects", "test.hook.soft_limit"]
    assert letters["test.hook.rejects"].reason == "rejected"
    assert letters["test.hook.rejects"].exception.startswith("Reject: ")
    assert letters["test.hook.soft_limit"].reason == "handler_failed"
    assert letters["test.hook.soft_limit"].exception.startswith("SoftTimeLimitExceeded")
    assert dead_lettered("rejected") == rejected + 1
    assert redis_client.get(hook_key(SID, "failed", "test.hook.rejects")) == b"failed"
    assert redis_client.get(hook_key(SID, "started", "test.hook.ignores")) == b"done"


def test_a_hard_time_limit_reported_in_the_main_process_is_dead_lettered(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    """Celery kills the pool process and calls ``on_failure`` in the worker's main
    process, whose ``self.request`` is empty, with the task id and arguments
    (``celery.worker.request.Request.on_timeout``)."""
    @on_recording("finished", name="test.hook.hard_limit")
    def stuck(recording: dict[str, Any]) -> None: ...

    registered.append("test.hook.hard_limit")
    task: Any = stuck.task  # type: ignore[attr-defined]
    args = [SID, "finished", {"sequence": 3}, {"sid": SID}]
    # The copy that was running had claimed the run.
    redis_client.set(hook_key(SID, "finished", "test.hook.hard_limit"), "t-hard", ex=60)
    exc = TimeLimitExceeded(5.0)
    try:
        raise exc
    except TimeLimitExceeded:
        einfo = ExceptionInfo()
    assert task.request.id is None  # the main process's empty request
    redis_client.script_flush()  # Redis restarted since the script was loaded: NOSCRIPT
    task.on_failure(exc, "t-hard", args, {}, einfo)
    task.on_failure(exc, "t-hard", args, {}, einfo)  # reported twice: written once
    (letter,) = hook_letters(redis_client)
    assert letter.reason == "handler_failed" and letter.exception.startswith("TimeLimitExceeded")
    assert letter.extra == {"sid": SID, "phase": "finished", "info": {"sequence": 3}}
    # A time limit reported for a task that does not hold the claim writes nothing.
    task.on_failure(exc, "another-task", args, {}, einfo)
    assert len(hook_letters(redis_client)) == 1


def test_a_claim_while_redis_is_away_is_retried_not_acknowledged(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess,
        registered: list[str], caplog: pytest.LogCaptureFixture) -> None:
    task, calls = counting_hook(registered, "test.hook.redis_away", max_retries=1)
    # Celery logs a retry at INFO; registering a hook configures no logging.
    caplog.set_level(logging.INFO, logger="celery.app.trace")
    runtime.configure(dataclasses.replace(settings, redis_retry_s=1, redis_timeout_s=0.5))
    try:
        redis_server.stop()
        args = [SID, "finished", {}, {"sid": SID}]
        # Each attempt tries the claim for REDIS_RETRY_S; then Celery retries the task
        # with a countdown (``apply`` runs the retry at once), and once its retries
        # are used up the task goes back to the queue: never acknowledged as done.
        result = task.apply(args=args, task_id="copy-1")
        assert result.state == "REJECTED" and calls == []
        celery_lines = [r.getMessage() for r in caplog.records if r.name == "celery.app.trace"]
        assert len(celery_lines) == 2, celery_lines
        assert "retry: Retry in 1s" in celery_lines[0]
        assert "reject requeue=True" in celery_lines[1]
        redis_server.start()
        assert task.apply(args=args, task_id="copy-1").state == "SUCCESS" and calls == [1]
        assert redis_client.get(hook_key(SID, "finished", "test.hook.redis_away")) == b"done"
    finally:
        runtime.configure(Settings.from_env())


def test_a_hook_registers_under_rabbitmq_against_its_redelivery_limit() -> None:
    """@on_recording checks its time options against the active broker's limit (as
    @on_event does): with RabbitMQ the Celery app has no visibility timeout to read."""
    import subprocess
    import sys

    code = (
        "from agora_callbacks import on_recording\n"
        "@on_recording('finished', time_limit=60)\n"
        "def ok(recording): pass\n"
        "try:\n"
        "    @on_recording('failed', time_limit=10**6)\n"
        "    def too_long(recording): pass\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CELERY_BROKER_URL"}
    env.update({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                "REDIS_URL": "redis://127.0.0.1:1/0", "AGORA_NCS_SECRETS": "s"})
    ran = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert "RABBITMQ_CONSUMER_TIMEOUT_S" in ran.stdout, ran.stdout


def test_an_outcome_is_recorded_through_a_redis_pause(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess,
        registered: list[str]) -> None:
    """Redis stops answering while the hook runs (``CLIENT PAUSE``, as a failover
    would): its outcome, a success or a dead letter, is tried again until written
    (each call times out after 0.3 s; the pause lasts 1.5 s)."""
    from workers_support import await_answering, pause_all

    @on_recording("finished", name="test.hook.paused_ok")
    def fine(recording: dict[str, Any]) -> None:
        pause_all(redis_server.url, 1500)

    @on_recording("failed", name="test.hook.paused_fails")
    def broken(recording: dict[str, Any]) -> None:
        pause_all(redis_server.url, 1500)
        raise RuntimeError("alerting down")

    registered.extend(["test.hook.paused_ok", "test.hook.paused_fails"])
    runtime.configure(dataclasses.replace(settings, redis_retry_s=5, redis_timeout_s=0.3))
    try:
        ok = fine.task.apply(args=[SID, "finished", {}, {"sid": SID}],  # type: ignore[attr-defined]
                             task_id="ok-1")
        await_answering(redis_server.url)
        failed = broken.task.apply(args=[SID, "failed", {}, {"sid": SID}],  # type: ignore[attr-defined]
                                   task_id="fail-1")
        await_answering(redis_server.url)
    finally:
        runtime.configure(Settings.from_env())
    assert ok.state == "SUCCESS" and failed.state == "FAILURE"
    assert redis_client.get(hook_key(SID, "finished", "test.hook.paused_ok")) == b"done"
    assert redis_client.get(hook_key(SID, "failed", "test.hook.paused_fails")) == b"failed"
    (letter,) = hook_letters(redis_client)
    assert letter.handler == "test.hook.paused_fails"
    assert letter.exception == "RuntimeError: alerting down"


def test_an_outcome_is_recorded_after_the_claim_lapsed_during_a_long_hook(
        settings: Settings, redis_client: redis.Redis, registered: list[str]) -> None:
    """The claim is kept ``RECORD_TTL_S``; a hook that runs (or is retried) longer
    sees its claim expire. Nobody else claimed the run since, so its outcome is
    still recorded: a failure is dead-lettered, and the claim says how it ended."""
    from conftest import wait_for

    def lapsed(phase: str, name: str) -> None:
        key = hook_key(SID, phase, name)
        wait_for(lambda: not redis_client.exists(key), timeout=10, message="the claim lapsed")

    @on_recording("finished", name="test.hook.lapsed_ok")
    def fine(recording: dict[str, Any]) -> None:
        lapsed("finished", "test.hook.lapsed_ok")

    @on_recording("failed", name="test.hook.lapsed_fails")
    def broken(recording: dict[str, Any]) -> None:
        lapsed("failed", "test.hook.lapsed_fails")
        raise RuntimeError("alerting down")

    registered.extend(["test.hook.lapsed_ok", "test.hook.lapsed_fails"])
    runtime.configure(dataclasses.replace(settings, record_ttl_s=1))
    try:
        ok = fine.task.apply(args=[SID, "finished", {}, {"sid": SID}],  # type: ignore[attr-defined]
                             task_id="ok-1")
        ok_key = hook_key(SID, "finished", "test.hook.lapsed_ok")
        assert redis_client.get(ok_key) == b"done" and redis_client.ttl(ok_key) > 0
        failed = broken.task.apply(args=[SID, "failed", {}, {"sid": SID}],  # type: ignore[attr-defined]
                                   task_id="fail-1")
        failed_key = hook_key(SID, "failed", "test.hook.lapsed_fails")
        assert redis_client.get(failed_key) == b"failed" and redis_client.ttl(failed_key) > 0
    finally:
        runtime.configure(Settings.from_env())
    assert ok.state == "SUCCESS" and failed.state == "FAILURE"
    (letter,) = hook_letters(redis_client)
    assert letter.handler == "test.hook.lapsed_fails"
    assert letter.exception == "RuntimeError: alerting down"


def test_an_outcome_is_not_recorded_over_another_copys_claim(
        redis_client: redis.Redis, on_test_redis: None, registered: list[str]) -> None:
    """The claim lapsed and another copy of the task claimed the run: the first
    copy's outcome is not recorded over the second's claim."""
    @on_recording("finished", name="test.hook.overtaken")
    def fails(recording: dict[str, Any]) -> None:
        redis_client.set(hook_key(SID, "finished", "test.hook.overtaken"), "copy-2", ex=60)
        raise RuntimeError("late")

    registered.append("test.hook.overtaken")
    result = fails.task.apply(args=[SID, "finished", {}, {"sid": SID}],  # type: ignore[attr-defined]
                              task_id="copy-1")
    assert result.state == "FAILURE" and hook_letters(redis_client) == []
    assert redis_client.get(hook_key(SID, "finished", "test.hook.overtaken")) == b"copy-2"


def counting_hook(registered: list[str], name: str, **options: Any) -> tuple[Any, list[int]]:
    """A ``finished`` hook named ``name`` (with ``options``) that counts its runs: its
    Celery task and the list it appends to."""
    calls: list[int] = []

    @on_recording("finished", name=name, **options)
    def done(recording: dict[str, Any]) -> None:
        calls.append(1)

    registered.append(name)
    return done.task, calls  # type: ignore[attr-defined]


@contextmanager
def claim_during_an_outage(settings: Settings, redis_server: ServerProcess,
                           *, soft_limit_after_s: float, **overrides: Any) -> Iterator[None]:
    """Redis stopped and the runtime's settings changed by ``overrides`` while the
    block runs, and ``SoftTimeLimitExceeded`` raised ``soft_limit_after_s`` into it
    from a signal handler, as billiard raises a task's soft time limit."""
    import signal

    def soft_limit(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    runtime.configure(dataclasses.replace(settings, **overrides))
    try:
        redis_server.stop()
        signal.setitimer(signal.ITIMER_REAL, soft_limit_after_s)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        runtime.configure(Settings.from_env())


def test_a_soft_time_limit_during_the_claim_sends_the_task_back(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess,
        registered: list[str]) -> None:
    """A hook with a soft time limit below ``REDIS_RETRY_S``: Redis is away while it
    tries its claim, and the limit strikes (billiard raises ``SoftTimeLimitExceeded``
    from a signal handler, as here). The hook has not run: its task goes back to
    the queue, it is not acknowledged as failed without a dead letter."""
    task, calls = counting_hook(registered, "test.hook.soft_claim", soft_time_limit=1,
                                max_retries=0)
    with claim_during_an_outage(settings, redis_server, soft_limit_after_s=0.5,
                                redis_retry_s=20, redis_timeout_s=0.2):
        result = task.apply(args=[SID, "finished", {}, {"sid": SID}], task_id="copy-1")
    assert calls == []
    assert result.state == "REJECTED" and result.result.requeue, result.state


def test_a_claim_retry_that_cannot_be_published_sends_the_task_back(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess,
        registered: list[str]) -> None:
    """In a worker (not eager), Redis is away past ``REDIS_RETRY_S`` at the claim and
    so is the broker (by default the same Redis): Celery's ``retry`` cannot publish
    the retry and raises ``Reject(requeue=False)``, which would drop the task. It
    goes back to the queue instead."""
    from celery.app.trace import build_tracer

    from agora_callbacks.workers.app import celery_app

    task, calls = counting_hook(registered, "test.hook.no_broker", max_retries=3)
    # The test process's Celery app publishes to the session's Redis (stopped below,
    # as a worker's broker, by default its Redis, is in an outage) or, configured
    # before it started, to a port where nothing listens (tests/conftest.py).
    assert celery_app.conf.broker_url in (redis_server.url, "redis://127.0.0.1:1/0")
    trace = build_tracer(task.name, task, eager=False, propagate=False, app=celery_app)
    runtime.configure(dataclasses.replace(settings, redis_retry_s=1, redis_timeout_s=0.2))
    try:
        redis_server.stop()
        traced = trace("copy-1", [SID, "finished", {}, {"sid": SID}], {},
                       {"id": "copy-1", "retries": 0, "delivery_info": {}})
    finally:
        runtime.configure(Settings.from_env())
    assert calls == []
    assert traced.info is not None and traced.info.state == "REJECTED", traced
    assert isinstance(traced.info.retval, Reject) and traced.info.retval.requeue


def test_a_claim_retry_with_no_time_left_to_run_sends_the_task_back(
        settings: Settings, redis_client: redis.Redis, redis_server: ServerProcess,
        registered: list[str]) -> None:
    """The claim's retry waits ``REDIS_RETRY_S``; when that wait would leave the
    retried run no time below the broker's redelivery horizon
    (``BoundedRetryTask.retry`` refuses it), the task goes back to the queue instead
    of failing with the refusal."""
    task, calls = counting_hook(registered, "test.hook.no_time", time_limit=150,
                                soft_time_limit=100, max_retries=3)
    started = time.monotonic()
    # A 180 s retry wait: the hook's 100 s soft limit cannot fit after it.
    with claim_during_an_outage(settings, redis_server, soft_limit_after_s=0.5,
                                redis_retry_s=180, redis_timeout_s=0.2):
        result = task.apply(args=[SID, "finished", {}, {"sid": SID}], task_id="copy-1")
    # Sent back at once: not failed with the refusal, whose outcome the worker would
    # then try to record for REDIS_RETRY_S against the Redis that is away.
    assert time.monotonic() - started < 60
    assert calls == []
    assert result.state == "REJECTED" and result.result.requeue, result.state
