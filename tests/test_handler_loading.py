"""Handler modules under a real ``celery worker``: found in the current directory
without PYTHONPATH; one that cannot be imported, or a name that is not a module,
is one line naming the variable (or entry point) and the module, and exit status 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import psutil
import pytest
import redis
from conftest import wait_for

from agora_callbacks.embedded_server import ServerProcess, free_port

CELERY = [sys.executable, "-m", "celery", "-A", "agora_callbacks.workers.app:celery_app"]

HANDLERS = textwrap.dedent("""
    from agora_callbacks import on_event

    @on_event(40)
    def hello(event):
        return event.sid
""")


def worker_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CALLBACK_HANDLERS")}
    env.update({"REDIS_URL": redis_url, "AGORA_NCS_SECRETS": "s", "LOG_FORMAT": "json",
                "WORKER_METRICS_PORT": "0", **extra})
    return env


def run_worker(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CELERY, "worker", "-P", "solo", "--without-gossip",
                           "--without-mingle"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A user's project directory: handler modules beside the command, no PYTHONPATH."""
    (tmp_path / "myhandlers.py").write_text(HANDLERS)
    (tmp_path / "broken.py").write_text("import json\n\nSETTINGS = {}['missing']\n")
    (tmp_path / "needs_dep.py").write_text("import not_installed_anywhere\n")
    return tmp_path


@pytest.mark.parametrize(("value", "expected"), [
    ("nosuch", "CALLBACK_HANDLERS: cannot import 'nosuch': no module named 'nosuch' in the "
               "current directory"),
    ("myhandlers.hello", "CALLBACK_HANDLERS: cannot import 'myhandlers.hello': "
                         "'myhandlers.hello' is not a module ('hello' is a function in "
                         "myhandlers): name the module, 'myhandlers'"),
    ("myhandlers:hello", "CALLBACK_HANDLERS: 'myhandlers:hello' is not a module path"),
    ("myhandlers,broken", "CALLBACK_HANDLERS: module 'broken' failed to import: KeyError: "
                          "'missing' (at "),
    ("needs_dep", "CALLBACK_HANDLERS: module 'needs_dep' failed to import: "
                  "ModuleNotFoundError: No module named 'not_installed_anywhere' (at "),
])
def test_a_bad_handler_module_is_one_line_and_exit_1(project: Path, redis_server: ServerProcess,
                                                     value: str, expected: str) -> None:
    result = run_worker(project, worker_env(redis_server.url, CALLBACK_HANDLERS=value))
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: {expected}"), lines[0]


def _distribution(site: Path, name: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[agora_callbacks.handlers]\n{entry_points}\n")


@pytest.mark.parametrize(("entry", "expected"), [
    ("mine = gone_module", "entry point 'mine' (group agora_callbacks.handlers): cannot "
                           "import 'gone_module': no module named 'gone_module'"),
    ("mine = myhandlers:hello", "entry point 'mine' (group agora_callbacks.handlers): "
                                "'myhandlers:hello' is not a module path: the value must "
                                "name a module"),
])
def test_a_bad_entry_point_is_one_line_and_exit_1(project: Path, tmp_path_factory:
                                                  pytest.TempPathFactory,
                                                  redis_server: ServerProcess, entry: str,
                                                  expected: str) -> None:
    site = tmp_path_factory.mktemp("site")
    _distribution(site, "their_handlers", entry)
    env = worker_env(redis_server.url, PYTHONPATH=str(site))
    result = run_worker(project, env)
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).splitlines()
    assert lines == [f"Error: {expected}"] or (len(lines) == 1 and
                                               lines[0].startswith(f"Error: {expected}")), lines


def test_an_entry_point_naming_a_module_is_loaded(project: Path,
                                                  tmp_path_factory: pytest.TempPathFactory,
                                                  redis_server: ServerProcess,
                                                  redis_client: redis.Redis) -> None:
    site = tmp_path_factory.mktemp("site")
    (site / "their_pkg_handlers.py").write_text(HANDLERS.replace("hello", "theirs"))
    _distribution(site, "their_pkg", "theirs = their_pkg_handlers")
    port = free_port()
    env = worker_env(redis_server.url, PYTHONPATH=str(site), CALLBACK_HANDLERS="myhandlers",
                     WORKER_METRICS_PORT=str(port))
    proc = subprocess.Popen([*CELERY, "worker", "-P", "solo", "--without-gossip",
                             "--without-mingle", "-n", f"entry-{port}@%h"], cwd=project, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(iter(proc.stdout.readline, ""))

    threading.Thread(target=read, daemon=True).start()
    try:
        line = wait_for(lambda: next((x for x in lines if "handler modules loaded" in x), None)
                        or proc.poll() is not None, timeout=60, message="handlers loaded")
        assert isinstance(line, str), lines
        assert json.loads(line)["modules"][-2:] == ["myhandlers", "their_pkg_handlers"]
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


def test_the_docs_example_handler_module_loads_in_its_directory(
        project_root: Path, redis_server: ServerProcess) -> None:
    """docs/handlers-image/example_handlers.py, as its Dockerfile places it: in the
    worker's working directory, named in CALLBACK_HANDLERS, no PYTHONPATH. A worker
    that loads it and then refuses a bad setting shows the import succeeded."""
    env = worker_env(redis_server.url, CALLBACK_HANDLERS="example_handlers,nosuch")
    result = run_worker(project_root / "docs" / "handlers-image", env)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    assert "cannot import 'nosuch'" in out and "example_handlers" not in out, out
