"""The Procfile's worker line, run by honcho twice on one host from a user's project
directory: the handler module beside it is loaded without PYTHONPATH, the two take
node names of their own (both answer ``inspect ping``), and in JSON mode every line
they print is a JSON object. On each broker: on RabbitMQ two workers with one node
name would stop on RESOURCE_LOCKED (the node's pidbox queue is exclusive)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_for

from agora_callbacks.embedded_server import ServerProcess

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
HONCHO_LINE = re.compile(r"^\d\d:\d\d:\d\d (?P<name>\S+)\s+\| (?P<text>.*)$")


@pytest.mark.both_brokers
def test_two_procfile_workers_on_one_host(project_root: Path, tmp_path: Path,
                                          redis_server: ServerProcess, broker: Any) -> None:
    (tmp_path / "myhandlers.py").write_text(
        "from agora_callbacks import on_event\n\n\n@on_event(40)\ndef hello(event):\n"
        "    return event.sid\n")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"REDIS_URL": redis_server.url, "AGORA_NCS_SECRETS": "s", "LOG_FORMAT": "json",
                "CALLBACK_HANDLERS": "myhandlers", "WORKER_METRICS_PORT": "0",
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}"})
    if broker.kind != "redis":
        env["CELERY_BROKER_URL"] = broker.url
    process = subprocess.Popen(
        [str(BIN / "honcho"), "-f", str(project_root / "Procfile"), "-d", str(tmp_path),
         "--no-colour", "start", "-c", "worker=2", "worker"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    def worker_lines() -> list[tuple[str, str]]:
        found = []
        for line in list(lines):
            match = HONCHO_LINE.match(line)
            if match and match.group("name").startswith("worker."):
                found.append((match.group("name"), match.group("text")))
        return found

    try:
        wait_for(lambda: sum(" ready." in text for _, text in worker_lines()) >= 2
                 or process.poll() is not None, timeout=120, interval=0.2,
                 message="two workers ready")
        assert process.poll() is None, "\n".join(lines)

        ping = subprocess.run(
            [str(BIN / "celery"), "-A", "agora_callbacks.workers.app:celery_app", "inspect",
             "ping", "--json", "--timeout", "5"], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=60)
        assert ping.returncode == 0, ping.stdout + ping.stderr
        nodes = set(json.loads(ping.stdout.strip().splitlines()[-1]))
        assert len(nodes) == 2 and all(re.fullmatch(r"worker-\d+@\S+", n) for n in nodes), nodes

        records = [(name, json.loads(text)) for name, text in worker_lines()]
        started = {name: r["node"] for name, r in records if r["event"] == "worker starting"}
        assert set(started) == {"worker.1", "worker.2"} and set(started.values()) == nodes
        loaded = [r["modules"] for _, r in records if r["event"] == "handler modules loaded"]
        assert len(loaded) == 2 and all("myhandlers" in m for m in loaded), loaded
    finally:
        children = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            _, alive = psutil.wait_procs(children, timeout=20)
            for child in alive:
                child.kill()
        reader.join(timeout=5)
    # To the end, the shutdown included: nothing but JSON from the workers.
    for name, text in worker_lines():
        assert isinstance(json.loads(text), dict), (name, text)
