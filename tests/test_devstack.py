"""The dev stack's process supervisor, with plain shell children."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner
from conftest import wait_for

from agora_callbacks.cli import main
from agora_callbacks.devstack import Child, ChildExited, Supervisor, group_alive


def supervisor(*children: Child, stop_timeout: float = 5.0) -> tuple[Supervisor, list[str]]:
    lines: list[str] = []
    return Supervisor(list(children), lines.append, stop_timeout=stop_timeout), lines


def test_output_is_prefixed_and_readiness_follows_the_ready_line() -> None:
    s, lines = supervisor(
        Child("a", ["sh", "-c", "echo starting; sleep 0.3; echo 'all ready now'; sleep 60"],
              ready_line="ready now"),
        Child("bb", ["sh", "-c", "echo hello; sleep 60"]),
    )
    s.start()
    try:
        assert not s.children[0].is_ready()
        s.wait_ready(timeout=10)
        assert s.children[0].is_ready()
        assert "a  | all ready now" in lines and "bb | hello" in lines
    finally:
        assert s.stop() == []


def test_stop_kills_the_whole_group_including_grandchildren() -> None:
    s, _ = supervisor(Child("tree", ["sh", "-c", "sleep 300 & sleep 300 & wait"]))
    s.start()
    leader = s.children[0].pid
    assert leader is not None
    tree = psutil.Process(leader)
    wait_for(lambda: len(tree.children()) == 2, timeout=10, message="both sleeps started")
    grandchildren = tree.children()
    assert s.stop() == []
    _, alive = psutil.wait_procs(grandchildren, timeout=5)
    assert not alive and not group_alive(leader)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    s, _ = supervisor(
        Child("stubborn", [sys.executable, "-c",
                           "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                           "print('up', flush=True); time.sleep(300)"], ready_line="up"),
        stop_timeout=0.5,
    )
    s.start()
    s.wait_ready(timeout=10)
    pid = s.children[0].pid
    assert pid is not None
    assert s.stop() == ["stubborn"]
    assert not group_alive(pid)


def test_a_child_that_exits_is_reported() -> None:
    s, _ = supervisor(Child("quick", ["sh", "-c", "exit 3"]),
                      Child("slow", ["sh", "-c", "sleep 60"]))
    s.start()
    try:
        with pytest.raises(ChildExited) as info:
            s.run_until_stopped(poll=0.05)
        assert (info.value.name, info.value.code) == ("quick", 3)
    finally:
        s.stop()


def test_wait_ready_names_the_laggards() -> None:
    s, _ = supervisor(Child("never", ["sh", "-c", "sleep 60"], ready=lambda: False))
    s.start()
    try:
        with pytest.raises(TimeoutError, match="never"):
            s.wait_ready(timeout=0.3)
    finally:
        s.stop()


def test_dev_help(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "--help"])
    assert result.exit_code == 0
    for option in ("--port", "--flower-port", "--data-dir", "--worker-metrics-port"):
        assert option in result.output
