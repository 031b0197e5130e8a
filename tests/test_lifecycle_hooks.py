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
