"""``dlq requeue`` of a handler dead letter re-runs that handler on that event, and of
a hook dead letter that lifecycle hook on that record, with a real Celery worker:
the handler or hook that gave up succeeds on the second try, once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

from agora_callbacks import deadletters, inbox, keys
from agora_callbacks.cli import main
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.redrive import handler_task_args, hook_task_args, producer_app
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle, new_sid
from agora_callbacks.workers.hook_runs import claim_key, hook_key

pytestmark = pytest.mark.slow


@contextmanager
def running(w: Worker, client: redis.Redis) -> Iterator[Worker]:
    """``w`` once it is ready, stopped afterwards."""
    try:
        w.wait_ready(client)
        yield w
    finally:
        w.stop()


@pytest.fixture
def worker(redis_server: ServerProcess, redis_client: redis.Redis,
           tmp_path: Path) -> Iterator[Worker]:
    with running(Worker(redis_server.url, "redrive", concurrency=1, log_dir=tmp_path),
                 redis_client) as w:
        yield w


def store_recording(client: redis.Redis, sid: str) -> list[Any]:
    """Store a composite recording's events in the inbox, as the ingress does."""
    events = lifecycle("composite", sid)
    now = int(time.time() * 1000)
    for e in events:
        inbox.store(client, encode(e), inbox.ReceiveMeta(now, "v2", 0, "127.0.0.1", "t"))
    return events


def only_dead_letter(client: redis.Redis, kind: str) -> deadletters.DeadLetter:
    """The one dead letter of ``kind``, once it is written."""
    letters = wait_for(lambda: [d for d in deadletters.list_(client) if d.kind == kind],
                       timeout=60, message=f"the failing {kind} to be dead-lettered")
    assert isinstance(letters, list) and len(letters) == 1
    return letters[0]


def runs(client: redis.Redis, handler: str) -> list[dict[str, object]]:
    rows = [json.loads(r) for r in client.lrange("t:runs", 0, -1)]
    return [r for r in rows if r["handler"] == handler]


def test_requeue_reruns_the_dead_lettered_handler(worker: Worker,
                                                  redis_client: redis.Redis) -> None:
    sid = new_sid()
    failing = 5
    redis_client.hset(f"t:ctl:{sid}:{failing}", "always_fail", "1")
    events = store_recording(redis_client, sid)
    letter = only_dead_letter(redis_client, deadletters.HANDLER)
    assert letter.handler == "e2e.every"
    # The recording went on without it: every other event was handled.
    wait_for(lambda: len(runs(redis_client, "every")) == len(events) - 1, timeout=60,
             message="the other events handled", )
    assert failing not in [r["seq"] for r in runs(redis_client, "every")]

    redis_client.hdel(f"t:ctl:{sid}:{failing}", "always_fail")
    result = CliRunner().invoke(main, ["dlq", "requeue", letter.id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 requeued, 0 failed" in result.output and "task e2e.every[" in result.output
    assert deadletters.get(redis_client, letter.id) is None

    wait_for(lambda: failing in [r["seq"] for r in runs(redis_client, "every")], timeout=60,
             message="the handler re-run")
    rerun = [r for r in runs(redis_client, "every") if r["seq"] == failing]
    assert len(rerun) == 1
    assert rerun[0]["sid"] == sid and rerun[0]["key"] == letter.key
    assert deadletters.count(redis_client) == 0, deadletters.list_(redis_client)


def test_task_args_keep_key_flags_and_body_outside_the_order() -> None:
    letter = deadletters.DeadLetter(
        id="1-0", kind=deadletters.HANDLER, reason="handler_failed", detail="", body=b'{"a":1}',
        meta={"request_id": "r"}, at_ms=0, key="sid:31:7", handler="h",
        extra={"sid": "sid", "member": "7", "late": True, "gap": [3, 5]})
    assert handler_task_args(letter) == [
        "", "", "sid:31:7", True, [3, 5], {"request_id": "r", "origin": "dlq:1-0"}, '{"a":1}']


@pytest.fixture
def hook_worker(redis_server: ServerProcess, redis_client: redis.Redis,
                tmp_path: Path) -> Iterator[Worker]:
    with running(Worker(redis_server.url, "hook-redrive", concurrency=1, log_dir=tmp_path,
                        handlers="hook_redrive_handlers", env={"SETTLE_S": "1"},
                        queues="hooks-q"), redis_client) as w:
        yield w


def hook_runs(client: redis.Redis, sid: str) -> list[dict[str, Any]]:
    return [json.loads(r) for r in client.lrange(f"t:hook-runs:{sid}", 0, -1)]


def test_requeue_reruns_the_dead_lettered_hook_once(hook_worker: Worker,
                                                     redis_client: redis.Redis) -> None:
    sid = new_sid()
    redis_client.set(f"t:hook-fail:{sid}", "1")
    store_recording(redis_client, sid)
    letter = only_dead_letter(redis_client, deadletters.HOOK)
    assert letter.handler == "e2e.copy_files" and letter.reason == "handler_failed"
    assert letter.extra["sid"] == sid and letter.extra["phase"] == "files_ready"
    (first,) = hook_runs(redis_client, sid)
    assert json.loads(letter.body)["sid"] == sid and letter.extra["info"] == first["info"]

    # The worker announced the hook's queue, the only one it reads: a requeue on
    # Celery's default queue would never run.
    assert redis_client.hget(keys.TASK_QUEUES, "e2e.copy_files") == b"hooks-q"
    redis_client.delete(f"t:hook-fail:{sid}")
    result = CliRunner().invoke(main, ["dlq", "requeue", letter.id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 requeued, 0 failed" in result.output and "task e2e.copy_files[" in result.output
    assert f"dlq list --kind hook --sid {sid}" in result.output
    assert deadletters.get(redis_client, letter.id) is None

    wait_for(lambda: len(hook_runs(redis_client, sid)) == 2, timeout=60,
             message="the hook re-run")
    rerun = hook_runs(redis_client, sid)[1]
    assert rerun == {"info": {**first["info"], "redrive": letter.id}, "files": first["files"]}

    # The same redrive published a second time (an operator's retry, a publisher
    # that died before it saw the publish through): skipped. Another recording's
    # run, published after it on the same queue and one pool process, says when
    # the worker has taken it.
    app = producer_app(Settings.from_env())
    try:
        app.send_task(letter.handler, args=hook_task_args(letter), queue="hooks-q")
        other = new_sid()
        app.send_task(letter.handler, args=[other, "files_ready", {}, {"sid": other}],
                      queue="hooks-q")
    finally:
        app.close()
    wait_for(lambda: hook_runs(redis_client, other), timeout=60,
             message="the run published after the copy")
    assert len(hook_runs(redis_client, sid)) == 2
    assert deadletters.count(redis_client) == 0, deadletters.list_(redis_client)


def test_a_handler_s_queue_holds_its_task_its_retry_and_its_requeue(
        hook_worker: Worker, redis_client: redis.Redis) -> None:
    """``e2e.files`` is registered with ``queue="hooks-q"``, the only queue its worker
    reads: its first run, its retry (``autoretry_for``) and its run requeued from
    its dead letter (by name, from this process, which never imported it) must
    all go there to run at all."""
    sid = new_sid()
    redis_client.set(f"t:files-fail:{sid}", "1")
    store(redis_client, body(sid, 0, 40))
    letter = only_dead_letter(redis_client, deadletters.HANDLER)
    assert letter.handler == "e2e.files"
    assert redis_client.get(f"t:files-attempts:{sid}") == b"2"  # the run and its retry
    assert redis_client.hget(keys.TASK_QUEUES, "e2e.files") == b"hooks-q"

    redis_client.delete(f"t:files-fail:{sid}")
    result = CliRunner().invoke(main, ["dlq", "requeue", letter.id], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 requeued, 0 failed" in result.output and "task e2e.files[" in result.output
    wait_for(lambda: redis_client.llen(f"t:files-done:{sid}") == 1, timeout=60,
             message="the requeued handler's run")
    assert redis_client.get(f"t:files-attempts:{sid}") == b"3"
    assert deadletters.count(redis_client) == 0, deadletters.list_(redis_client)


def test_hook_task_args_name_the_redrive() -> None:
    letter = deadletters.DeadLetter(
        id="5-0", kind=deadletters.HOOK, reason="handler_failed", detail="tb",
        body=b'{"sid":"s","files":[]}', meta={}, at_ms=0, handler="h",
        extra={"sid": "s", "phase": "finished", "info": {"sequence": 9, "redrive": "1-0"}})
    assert hook_task_args(letter) == [
        "s", "finished", {"sequence": 9, "redrive": "5-0"}, {"sid": "s", "files": []}]
    assert claim_key("s", "finished", "h", {"redrive": "5-0"}) == (
        hook_key("s", "finished", "h") + ":dlq:5-0")
