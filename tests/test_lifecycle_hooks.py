"""``@on_recording``: registration rules, the public API, and the fence that runs a
phase's hook once whatever copies of its task are delivered (Celery's ``apply``,
in this process, on the test's Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

import agora_callbacks
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
    task.apply(args=args, task_id="copy-1")  # the same task again (a retry): runs
    assert len(calls) == 2
    key = hook_key(SID, "finished", "test.hook.once")
    assert redis_client.get(key) == b"copy-1"
    assert 0 < redis_client.ttl(key) <= Settings.from_env().record_ttl_s


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
