"""A worker keeps its intake running: a killed intake process is started again
(and the restart is logged), health checks see it down meanwhile, and an intake
that keeps dying takes its worker down with a clear error."""

from __future__ import annotations

import contextlib
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import psutil
import pytest
import redis
from conftest import wait_for
from workers_procs import Worker
from workers_support import body, store

from agora_callbacks.embedded_server import free_port
from agora_callbacks.workers.bootstep import PROCESS_TITLE

pytestmark = pytest.mark.slow




def intake_pids(worker: Worker) -> list[int]:
    """The worker's intake process (a multiprocessing ``spawn`` child, titled
    ``agora-callbacks intake <consumer>`` once it runs), if running."""
    try:
        kids = psutil.Process(worker.pid).children()
    except psutil.NoSuchProcess:
        return []
    pids = []
    for kid in kids:
        with contextlib.suppress(psutil.Error):
            cmdline = " ".join(kid.cmdline())
            if (cmdline.startswith(PROCESS_TITLE) or "spawn_main" in cmdline) \
                    and kid.status() != psutil.STATUS_ZOMBIE:
                pids.append(kid.pid)
    return pids


def log_events(worker: Worker) -> list[dict[str, Any]]:
    rows = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                rows.append(json.loads(line))
    return rows


def metrics_port(worker: Worker) -> int:
    found = wait_for(lambda: [e["port"] for e in log_events(worker)
                              if e.get("event") == "metrics endpoint listening"],
                     timeout=20, message="the metrics endpoint's log line")
    return int(found[0])  # type: ignore[index]


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def intake_up(text: str) -> float | None:
    for line in text.splitlines():
        if line.startswith("acb_worker_intake_up "):
            return float(line.split()[1])
    return None


def handled(client: redis.Redis, sid: str) -> bool:
    return any(json.loads(r)["sid"] == sid for r in client.lrange("t:runs", 0, -1))


def test_a_killed_intake_is_restarted_and_a_body_stored_afterwards_is_handled(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    worker = start_worker("a")
    store(redis_client, body("before", 0))
    wait_for(lambda: handled(redis_client, "before"), message="a body handled")
    [victim] = intake_pids(worker)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    store(redis_client, body("after", 0))
    wait_for(lambda: handled(redis_client, "after"), timeout=30,
             message="a body stored after the kill handled")
    died = [e for e in log_events(worker)
            if e.get("event") == "intake process died: restarting it"]
    assert len(died) == 1, died
    assert died[0]["pid"] == victim and died[0]["exit"] == "killed by SIGKILL"
    assert died[0]["level"] == "error"
    [new] = intake_pids(worker)
    assert new != victim
    assert worker.proc.poll() is None


def test_health_checks_see_the_intake_down_until_it_is_back(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    worker = start_worker("a", env={"WORKER_METRICS_PORT": str(free_port()),
                                    "LOG_LEVEL": "info"})
    port = metrics_port(worker)
    wait_for(lambda: get(port, "/healthz")[0] == 200, message="healthz 200")
    text = get(port, "/metrics")[1]
    assert intake_up(text) == 1.0
    assert "acb_worker_intake_restarts_total 0.0" in text
    assert "acb_inbox_backlog" in text  # the usual figures are still there
    [victim] = intake_pids(worker)
    psutil.Process(victim).send_signal(signal.SIGKILL)
    # Down until the new intake has started (a fresh interpreter: well over 5 ms).
    _, answer = wait_for(lambda: (s := get(port, "/healthz"))[0] == 503 and s,
                         timeout=10, interval=0.005,
                         message="healthz 503 while the intake is down")  # type: ignore[misc]
    assert answer == "intake down\n"
    wait_for(lambda: [p for p in intake_pids(worker) if p != victim],
             message="a new intake process")
    wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), message="healthz 200 again")
    text = get(port, "/metrics")[1]
    assert intake_up(text) == 1.0
    assert "acb_worker_intake_restarts_total 1.0" in text


def test_an_intake_that_keeps_dying_takes_its_worker_down(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    from agora_callbacks.workers import bootstep

    max_restarts = getattr(bootstep, "MAX_RESTARTS", 5)
    worker = start_worker("a")
    killed: list[int] = []
    for _ in range(max_restarts + 1):
        assert worker.proc.poll() is None, worker.log()
        [pid] = wait_for(lambda: [p for p in intake_pids(worker) if p not in killed],
                         timeout=30, message="the next intake process")  # type: ignore[misc]
        psutil.Process(pid).send_signal(signal.SIGKILL)
        killed.append(pid)
    code = worker.proc.wait(timeout=30)
    assert code == 1, worker.log()
    fatal = [e for e in log_events(worker)
             if e.get("event") == "intake keeps dying: stopping the worker"]
    assert len(fatal) == 1 and fatal[0]["level"] == "critical", worker.log()
    assert fatal[0]["deaths"] == max_restarts + 1


def test_an_intake_restarted_while_redis_is_down_waits_for_it(
        start_worker: Callable[..., Worker], redis_client: redis.Redis,
        redis_server: Any) -> None:
    """An outage is not a crash: the new intake waits for Redis instead of dying
    at its first command (and using up the restarts), then reads as usual."""
    worker = start_worker("a")
    [victim] = intake_pids(worker)
    redis_server.stop()
    psutil.Process(victim).send_signal(signal.SIGKILL)

    def outcome() -> str | None:
        events = [e.get("event") for e in log_events(worker)]
        if events.count("intake process died: restarting it") > 1:
            return "died again"
        if "intake waiting for Redis" in events:
            return "waiting"
        return None

    assert wait_for(outcome, timeout=20, message="the new intake's fate") == "waiting", \
        worker.log()
    redis_server.start()
    store(redis_client, body("after", 0))
    wait_for(lambda: handled(redis_client, "after"), timeout=30,
             message="a body stored once Redis was back handled")
    died = [e for e in log_events(worker)
            if e.get("event") == "intake process died: restarting it"]
    assert [e["pid"] for e in died] == [victim]
    assert worker.proc.poll() is None


def test_a_hung_intake_is_seen_down_then_killed_and_restarted(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    """A stopped intake (SIGSTOP: alive, reading nothing) is not up: /healthz says
    503 once its loop has not gone round for INTAKE_HUNG_S, and the worker kills it
    and starts another, which handles what is stored meanwhile."""
    worker = start_worker("a", env={"WORKER_METRICS_PORT": str(free_port()),
                                    "LOG_LEVEL": "info", "INTAKE_HUNG_S": "3.5"})
    port = metrics_port(worker)
    wait_for(lambda: get(port, "/healthz")[0] == 200, message="healthz 200")
    [victim] = intake_pids(worker)
    psutil.Process(victim).send_signal(signal.SIGSTOP)
    try:
        store(redis_client, body("while-hung", 0))
        wait_for(lambda: get(port, "/healthz") == (503, "intake down\n"), timeout=15,
                 message="healthz 503 while the intake is hung")
        hung = wait_for(lambda: [e for e in log_events(worker)
                                 if e.get("event") == "intake process hung: killing it"],
                        timeout=15, message="the hung intake killed")
        assert hung[0]["pid"] == victim and hung[0]["level"] == "error"  # type: ignore[index]
        wait_for(lambda: not psutil.pid_exists(victim)
                 or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE,
                 message="the hung intake gone")
    finally:
        with contextlib.suppress(psutil.Error):
            psutil.Process(victim).send_signal(signal.SIGCONT)
    wait_for(lambda: [p for p in intake_pids(worker) if p != victim],
             timeout=20, message="a new intake process")
    wait_for(lambda: get(port, "/healthz") == (200, "ok\n"), timeout=20,
             message="healthz 200 again")
    wait_for(lambda: handled(redis_client, "while-hung"), timeout=30,
             message="the body stored while it hung handled")
    assert "acb_worker_intake_restarts_total 1.0" in get(port, "/metrics")[1]
    assert worker.proc.poll() is None


def test_a_busy_intake_is_not_taken_for_a_hung_one(
        start_worker: Callable[..., Worker], redis_client: redis.Redis) -> None:
    """Idle or working, the loop goes round well within INTAKE_HUNG_S: nothing is
    killed, however long the intake has run."""
    worker = start_worker("a", env={"WORKER_METRICS_PORT": str(free_port()),
                                    "LOG_LEVEL": "info", "INTAKE_HUNG_S": "3.5"})
    port = metrics_port(worker)
    [intake] = intake_pids(worker)
    for n in range(20):
        store(redis_client, body(f"busy-{n}", 0))
    wait_for(lambda: all(handled(redis_client, f"busy-{n}") for n in range(20)),
             timeout=30, message="every body handled")
    # Negative: the same intake has outlived INTAKE_HUNG_S three times over.
    wait_for(lambda: time.time() - psutil.Process(intake).create_time() > 10.5, timeout=30,
             interval=0.2, message="the intake's age past 3 x INTAKE_HUNG_S")
    assert get(port, "/healthz") == (200, "ok\n")
    assert not [e for e in log_events(worker)
                if str(e.get("event", "")).startswith(("intake process hung",
                                                       "intake process died"))], worker.log()
    assert intake_pids(worker) == [intake]
