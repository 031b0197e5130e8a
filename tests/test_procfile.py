"""The Procfile: web, worker and flower, runnable from this environment with honcho."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from agora_callbacks.embedded_server import ServerProcess, free_port


def procfile(root: Path) -> dict[str, str]:
    entries: dict[str, str] = {}
    for line in (root / "Procfile").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        assert match, f"not a Procfile line: {line!r}"
        assert match.group(1) not in entries, f"{match.group(1)} twice"
        entries[match.group(1)] = match.group(2)
    return entries


def test_procfile_has_the_process_types(project_root: Path) -> None:
    entries = procfile(project_root)
    assert {"web", "worker", "flower"} <= set(entries)


def test_each_command_exists_in_this_environment(project_root: Path) -> None:
    venv_bin = Path(sys.executable).parent
    for name, command in procfile(project_root).items():
        executable = shlex.split(command)[0]
        assert (venv_bin / executable).exists() or shutil.which(executable), (name, executable)


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.mark.slow
def test_honcho_starts_the_stack_and_stops_it(project_root: Path, tmp_path: Path,
                                              redis_server: ServerProcess) -> None:
    honcho = Path(sys.executable).parent / "honcho"
    port, flower_port, metrics_port = free_port(), free_port(), free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "AGORA_NCS_SECRETS": "secret",
           "FLOWER_PORT": str(flower_port), "WORKER_METRICS_PORT": str(metrics_port),
           "LOG_FORMAT": "json", "PATH": f"{honcho.parent}:{os.environ.get('PATH', '')}"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    process = subprocess.Popen(
        [str(honcho), "-f", str(project_root / "Procfile"), "-d", str(project_root),
         "start", "-p", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for raw in iter(process.stdout.readline, b""):
            lines.append(raw.decode("utf-8", "replace"))

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_for(lambda: _ok(f"http://127.0.0.1:{port}/readyz") or process.poll() is not None,
                 timeout=60, interval=0.2, message="web to answer /readyz")
        wait_for(lambda: _ok(f"http://127.0.0.1:{flower_port}/healthcheck")
                 or process.poll() is not None,
                 timeout=60, interval=0.2, message="flower to answer /healthcheck")
        wait_for(lambda: any(" ready." in line for line in lines) or process.poll() is not None,
                 timeout=60, interval=0.2, message="the worker to be ready")
        assert process.poll() is None, "".join(lines)
        children = psutil.Process(process.pid).children(recursive=True)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, [p.cmdline() for p in alive]
    finally:
        if process.poll() is None:
            for child in psutil.Process(process.pid).children(recursive=True):
                child.kill()
            process.kill()
            process.wait()
