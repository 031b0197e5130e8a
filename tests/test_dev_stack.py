"""``agora-callbacks dev`` end to end on the embedded server: start, send a signed
lifecycle with ``simulate``, see it handled and in ``recording SID``, Ctrl-C, and
nothing left running."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from conftest import wait_for

from agora_callbacks.embedded_server import ServerProcess, free_port

BIN = Path(sys.executable).parent / "agora-callbacks"

pytestmark = pytest.mark.slow


class Stack:
    """A running ``agora-callbacks dev`` with its output collected."""

    def __init__(self, data_dir: Path, env: dict[str, str], *extra: str) -> None:
        self.port, self.flower_port, self.redis_port = free_port(), free_port(), free_port()
        self.metrics_port = free_port()
        self.data_dir = data_dir
        self.env = env
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [str(BIN), "dev", "--port", str(self.port), "--flower-port", str(self.flower_port),
             "--redis-port", str(self.redis_port),
             "--worker-metrics-port", str(self.metrics_port),
             "--ready-timeout", "90", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=data_dir.parent,  # the default data dir, .agora-callbacks, relative to it
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in iter(self.process.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.data_dir.parent)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "AGORA_NCS_SECRETS", "ADMIN_TOKEN", "PORT")}
    env.pop("AGORA_DEV_DIR", None)
    env["LOG_FORMAT"] = "json"
    s = Stack(tmp_path / ".agora-callbacks", env)
    yield s
    if s.process.poll() is None:  # the test failed before stopping it
        for child in s.descendants():
            child.kill()
        s.process.kill()
        s.process.wait()


def test_dev_runs_the_stack_and_ctrl_c_stops_everything(stack: Stack) -> None:
    wait_for(lambda: "dev stack is up" in stack.output or stack.process.poll() is not None,
             timeout=120, message="the dev stack to be up")
    assert stack.process.poll() is None, stack.output
    out = stack.output
    assert f"http://127.0.0.1:{stack.port}/agora/ncs" in out
    assert f"http://127.0.0.1:{stack.flower_port}" in out
    assert "GENERATED FOR DEV ONLY" in out
    assert f"http://127.0.0.1:{stack.metrics_port}/metrics" in out
    command = re.search(r"^\s*(agora-callbacks simulate .*)$", out, re.M)
    assert command, out
    secret = (stack.data_dir / "dev-ncs-secret").read_text().strip()
    assert f"--secret {secret}" in command.group(1)
    assert (stack.data_dir / "redis.url").read_text().strip() == \
        f"redis://127.0.0.1:{stack.redis_port}/0"

    processes = [stack.process, *stack.descendants()]
    pids = [p.pid for p in processes]
    assert len(pids) >= 4  # supervisor, Redis, web, worker, flower (and their children)

    # The printed command, as the user would run it, with a seed to know the sid.
    sent = stack.cli(*command.group(1).split()[1:], "--kind", "individual", "--seed", "3",
                     "--json", "--timeout", "30")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    figures = json.loads(sent.stdout)
    (sid,) = figures["sids"]
    events = figures["events"]

    # Handled: the built-in handler's record of the recording, read through the CLI,
    # which finds the dev stack's Redis by itself (no REDIS_URL in its environment).
    last: list[str] = []

    def finished() -> dict[str, object] | None:
        result = stack.cli("recording", sid, "--json", timeout=30)
        last[:] = [result.stdout, result.stderr]
        if result.returncode != 0:
            return None
        record: dict[str, object] = json.loads(result.stdout)
        return record if record.get("event_count") == events else None

    try:
        record = wait_for(finished, timeout=60, interval=0.5, message="the recording handled")
    except BaseException:
        print("last `recording` answer:", *last, "dev output:", stack.output[-5000:], sep="\n")
        raise
    assert isinstance(record, dict)
    assert record["sequences"]["last"] == events - 1  # type: ignore[index]
    assert record["exit"] is not None
    shown = stack.cli("recording", sid)
    assert shown.returncode == 0 and sid in shown.stdout
    dlq = stack.cli("dlq", "list")
    assert dlq.returncode == 0 and dlq.stdout.strip() == "no dead letters", dlq.stdout

    # Ctrl-C: everything it started stops, the ports are free again.
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=60) == 0, stack.output
    _gone, alive = psutil.wait_procs([p for p in processes if p.pid != stack.process.pid],
                                    timeout=10)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    for port in (stack.port, stack.flower_port, stack.redis_port, stack.metrics_port):
        assert port_free(port), (port, stack.output[-3000:])
    assert "dev: everything stopped" in stack.output
    assert not (stack.data_dir / "redis.url").exists()
    # The data stays for the next start (AOF on): the recording is still there, and
    # the same dev secret is used again.
    assert list((stack.data_dir / "redis").glob("appendonlydir/*"))
    again = Stack(stack.data_dir, stack.env, "--no-flower")
    try:
        wait_for(lambda: "dev stack is up" in again.output or again.process.poll() is not None,
                 timeout=120, message="the dev stack to be up again")
        assert again.process.poll() is None, again.output
        assert f"--secret {secret}" in again.output
        kept = again.cli("recording", sid, "--json")
        assert kept.returncode == 0, kept.stderr
        assert json.loads(kept.stdout)["event_count"] == events
        os.killpg(again.process.pid, signal.SIGINT)
        assert again.process.wait(timeout=60) == 0, again.output
    finally:
        if again.process.poll() is None:
            for child in again.descendants():
                child.kill()
            again.process.kill()
            again.process.wait()


def test_a_child_that_dies_stops_the_stack(stack: Stack) -> None:
    wait_for(lambda: "dev stack is up" in stack.output or stack.process.poll() is not None,
             timeout=120, message="the dev stack to be up")
    children = [p for p in psutil.Process(stack.process.pid).children()
                if "flower" in " ".join(p.cmdline())]
    assert len(children) == 1
    processes = stack.descendants()
    children[0].kill()
    assert stack.process.wait(timeout=60) == 1
    assert "flower stopped" in stack.output
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive
    assert port_free(stack.port) and port_free(stack.redis_port)


def test_the_embedded_redis_dying_stops_the_stack(stack: Stack) -> None:
    wait_for(lambda: "dev stack is up" in stack.output or stack.process.poll() is not None,
             timeout=120, message="the dev stack to be up")
    [server] = [p for p in psutil.Process(stack.process.pid).children()
                if "valkey-server" in p.name() or "redis-server" in p.name()]
    processes = stack.descendants()
    server.kill()
    assert stack.process.wait(timeout=60) == 1, stack.output
    assert "redis stopped (exit code -9)" in stack.output
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert not alive
    assert port_free(stack.port) and port_free(stack.flower_port)
    assert not (stack.data_dir / "redis.url").exists()


def test_a_port_in_use_is_refused_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        result = subprocess.run([str(BIN), "dev", "--port", str(port)], env=env, cwd=tmp_path,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"port {port} is already in use" in result.stderr and "--port" in result.stderr
    assert not (tmp_path / ".agora-callbacks").exists()


def test_with_redis_url_it_uses_that_server(tmp_path: Path, redis_server: ServerProcess,
                                            redis_client: redis.Redis) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("AGORA_NCS_SECRETS", "PORT")}
    env["REDIS_URL"] = redis_server.url
    env["LOG_FORMAT"] = "json"
    stack = Stack(tmp_path / ".agora-callbacks", env, "--no-flower")
    try:
        wait_for(lambda: "dev stack is up" in stack.output or stack.process.poll() is not None,
                 timeout=120, message="the dev stack to be up")
        assert stack.process.poll() is None, stack.output
        assert f"{redis_server.url}  (REDIS_URL)" in stack.output
        assert "embedded" not in stack.output and "Flower" not in stack.output
        assert not (stack.data_dir / "redis.url").exists()
        names = " ".join(" ".join(p.cmdline()) for p in stack.descendants())
        assert "valkey-server" not in names and "redis-server" not in names
        os.killpg(stack.process.pid, signal.SIGINT)
        assert stack.process.wait(timeout=60) == 0
        assert redis_client.ping()  # the server it was given is left running
    finally:
        if stack.process.poll() is None:
            for child in stack.descendants():
                child.kill()
            stack.process.kill()
            stack.process.wait()
