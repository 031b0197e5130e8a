"""``agora-callbacks dev`` as a team runs it, from its own project directory in JSON
mode: its handler module loaded from there, Flower's API, the processes' names,
the lock on the data directory, each endpoint's own metrics, and nothing but JSON
lines from every process, from start to stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import wait_for
from prometheus_client.parser import text_string_to_metric_families
from test_dev_stack import BIN, Stack

from agora_callbacks.embedded_server import free_port

pytestmark = pytest.mark.slow

HANDLERS = textwrap.dedent("""
    from pathlib import Path

    from agora_callbacks import on_event

    SEEN = Path(__file__).with_name("seen.txt")

    @on_event("*")
    def remember(event):
        with SEEN.open("a") as out:
            out.write(f"{event.sid} {event.sequence}\\n")
""")

CHILD_LINE = re.compile(r"^(?P<name>web|worker|flower)\s*\| (?P<text>.*)$")


def get(url: str, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=15) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    project = tmp_path_factory.mktemp("project")
    (project / "myhandlers.py").write_text(HANDLERS)
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "AGORA_NCS_SECRETS", "ADMIN_TOKEN", "PORT", "PYTHONPATH",
                        "AGORA_DEV_DIR", "PROMETHEUS_MULTIPROC_DIR")}
    env.update({"LOG_FORMAT": "json", "CALLBACK_HANDLERS": "myhandlers"})
    s = Stack(project / ".agora-callbacks", env)
    wait_for(lambda: "dev stack is up" in s.output or s.process.poll() is not None,
             timeout=180, message="the dev stack to be up")
    assert s.process.poll() is None, s.output
    yield s
    if s.process.poll() is None:
        for child in s.descendants():
            child.kill()
        s.process.kill()
        s.process.wait()


def child_lines(stack: Stack) -> list[tuple[str, str]]:
    found = []
    for line in list(stack.lines):
        match = CHILD_LINE.match(line)
        if match:
            found.append((match.group("name"), match.group("text")))
    return found


def test_the_handler_module_in_the_project_directory_runs(stack: Stack) -> None:
    assert "Traceback" not in stack.output
    secret = (stack.data_dir / "dev-ncs-secret").read_text().strip()
    sent = stack.cli("simulate", "--url", f"http://127.0.0.1:{stack.port}/agora/ncs",
                     "--secret", secret, "--recordings", "1", "--kind", "individual",
                     "--seed", "5", "--json", "--timeout", "60", timeout=120)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    figures = json.loads(sent.stdout)
    (sid,) = figures["sids"]
    seen = stack.data_dir.parent / "seen.txt"

    def handled() -> list[int] | None:
        if not seen.exists():
            return None
        sequences = [int(line.split()[1]) for line in seen.read_text().splitlines()
                     if line.startswith(sid)]
        return sequences if len(sequences) == figures["events"] else None

    sequences = wait_for(handled, timeout=90, interval=0.5, message="every event handled")
    assert sequences == sorted(sequences)


def test_flower_api_answers_and_its_start_had_no_inspect_warning(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.flower_port}"

    def workers() -> dict[str, Any] | None:
        status, body = get(f"{base}/api/workers")
        assert status == 200, body
        found: dict[str, Any] = json.loads(body)
        return found or None

    found = wait_for(workers, timeout=60, interval=0.5, message="Flower's /api/workers")
    assert isinstance(found, dict)
    # The worker's node name is its own: dev-<pid of dev>@<host>.
    assert [n.split("@")[0] for n in found] == [f"dev-{stack.process.pid}"], found
    status, body = get(f"{base}/api/tasks")
    assert status == 200 and isinstance(json.loads(body), dict)
    assert "Inspect method" not in stack.output


def test_the_intake_process_has_a_name(stack: Stack) -> None:
    titles = [" ".join(p.cmdline()) for p in stack.descendants()]
    intake = [t for t in titles if t.startswith("agora-callbacks intake ")]
    assert len(intake) == 1, titles


def test_each_endpoint_lists_its_own_metrics(stack: Stack) -> None:
    token = (stack.data_dir / "dev-admin-token").read_text().strip()

    def families(url: str, bearer: str | None = None) -> set[str]:
        status, text = get(url, bearer)
        assert status == 200, text
        return {f.name for f in text_string_to_metric_families(text)}

    worker = families(f"http://127.0.0.1:{stack.metrics_port}/metrics")
    assert "acb_pipeline_admitted" in worker and "acb_worker_intake_up" in worker
    assert not [name for name in worker if name.startswith("acb_ingress_")], worker
    web = families(f"http://127.0.0.1:{stack.port}/metrics", token)
    assert "acb_ingress_received" in web
    assert get(f"http://127.0.0.1:{stack.port}/metrics")[0] == 401


def test_a_second_dev_in_the_same_directory_refuses(stack: Stack) -> None:
    url_file = stack.data_dir / "redis.url"
    before = url_file.read_text()
    # Other ports, so that only the data directory is shared.
    second = subprocess.run([str(BIN), "dev", "--port", str(free_port()), "--no-flower",
                             "--worker-metrics-port", str(free_port())], env=stack.env,
                            cwd=stack.data_dir.parent, capture_output=True, text=True,
                            timeout=60)
    assert second.returncode == 1
    assert second.stdout == ""
    message = second.stderr.strip()
    assert message == (f"Error: another `agora-callbacks dev` (pid {stack.process.pid}) is "
                       f"running with the data directory {stack.data_dir}: stop it first, "
                       "or start this one with another --data-dir"), message
    assert url_file.read_text() == before
    assert get(f"http://127.0.0.1:{stack.port}/readyz")[0] == 200
    assert stack.process.poll() is None


def test_every_line_of_every_process_is_json_to_the_end(stack: Stack) -> None:
    processes = [stack.process, *stack.descendants()]
    os.killpg(stack.process.pid, signal.SIGINT)
    assert stack.process.wait(timeout=90) == 0, stack.output[-3000:]
    psutil.wait_procs(processes[1:], timeout=20)
    stack.reader.join(timeout=10)
    lines = child_lines(stack)
    names = {name for name, _ in lines}
    assert names == {"web", "worker", "flower"}, names
    for name, text in lines:
        record = json.loads(text)
        assert isinstance(record, dict) and "event" in record and "level" in record, (name, text)
    events = [json.loads(text)["event"] for _, text in lines]
    assert "worker shutting down" in events and "Granian shutdown completed, see ya!" in events


def test_a_handler_module_that_does_not_import_stops_dev_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in ("REDIS_URL", "AGORA_NCS_SECRETS", "ADMIN_TOKEN", "PORT", "PYTHONPATH",
                        "AGORA_DEV_DIR")}
    env.update({"LOG_FORMAT": "json", "CALLBACK_HANDLERS": "myhandlers,nosuch"})
    (tmp_path / "myhandlers.py").write_text(HANDLERS)
    result = subprocess.run(
        [str(BIN), "dev", "--port", str(free_port()), "--flower-port", str(free_port()),
         "--worker-metrics-port", str(free_port()), "--ready-timeout", "90"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    errors = [line for line in out.splitlines() if "Error:" in line]
    assert errors == [f"worker | Error: CALLBACK_HANDLERS: cannot import 'nosuch': no module "
                      f"named 'nosuch' in the current directory ({tmp_path}) or on sys.path"], out
    assert "Traceback" not in out and "killed after the grace period" not in out, out
    assert "dev: worker stopped (exit code 1)" in out
    assert not [line for line in out.splitlines() if line.startswith(("web ", "flower "))], out
