"""Real Celery worker processes for the end-to-end tests and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import redis

from agora_callbacks import keys
from agora_callbacks.workers.application import DEFAULT_QUEUE

TESTS_DIR = Path(__file__).resolve().parent
CELERY_APP = "agora_callbacks.workers.app:celery_app"

FAST_ENV = {
    "REORDER_HOLD_MS": "1000",
    "CLAIM_IDLE_MS": "400",
    "HANDLER_VISIBILITY_TIMEOUT_S": "10",
    "DISPATCH_LEASE_MS": "1000",
    "HANDLER_DEADLINE_S": "30",
    "REDIS_RETRY_S": "2",
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "warning",
}


class Worker:
    """One ``celery worker`` (prefork) subprocess."""

    def __init__(self, redis_url: str, name: str, *, concurrency: int = 2,
                 handlers: str = "workers_e2e_handlers", env: dict[str, str] | None = None,
                 log_dir: Path | None = None, pool: str = "prefork",
                 queues: str = DEFAULT_QUEUE, broker_url: str | None = None) -> None:
        self.name = name
        # A node name of its own (-n): two workers on one host with the same name
        # clash on RabbitMQ (their pidbox queue is exclusive: RESOURCE_LOCKED).
        self.node = f"{name}-{uuid.uuid4().hex[:8]}@%h"
        environ = dict(os.environ)
        environ.update(FAST_ENV)
        environ.update({"REDIS_URL": redis_url, "CALLBACK_HANDLERS": handlers,
                        # The Celery broker: the same Redis unless a test gives one.
                        "CELERY_BROKER_URL": broker_url or "",
                        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR),
                                                       environ.get("PYTHONPATH", "")])})
        environ.update(env or {})
        self.log_path = (log_dir or Path("/tmp")) / f"worker-{name}-{os.getpid()}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115
        self._kids: list[psutil.Process] | None = None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", CELERY_APP, "worker",
             "-P", pool, "-c", str(concurrency), "-n", self.node, "--loglevel=WARNING",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-Q", queues],
            env=environ, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def children(self) -> list[int]:
        try:
            return [c.pid for c in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def wait_ready(self, client: redis.Redis, timeout: float = 30.0) -> None:
        """Until the worker's intake has joined the inbox's consumer group and its
        pool processes are up."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()}")
            if self.consumer_joined(client) and len(self.children()) >= 1:
                return
            time.sleep(0.05)
        raise TimeoutError(f"worker {self.name} not ready:\n{self.log()}")

    def consumer_joined(self, client: redis.Redis) -> bool:
        try:
            consumers = client.xinfo_consumers(keys.INBOX, keys.INBOX_GROUP)
        except redis.ResponseError:
            return False
        suffix = f":{self.pid}"
        return any(str(c["name"].decode() if isinstance(c["name"], bytes) else c["name"])
                   .endswith(suffix) for c in consumers)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def kill(self) -> None:
        """SIGKILL the main process and its pool children at once, as a host crash
        would, and reap it."""
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()

    def begin_stop(self) -> None:
        """Start a warm shutdown (SIGTERM) without waiting for it: ``stop`` then
        waits. Lets several workers shut down at the same time."""
        if self._kids is None:
            try:
                self._kids = psutil.Process(self.pid).children()
            except psutil.NoSuchProcess:
                self._kids = []
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), SIGKILL of the whole group if it takes too long."""
        self.begin_stop()
        kids = self._kids or []
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()
        for kid in kids:  # psutil checks it is still the same process (no pid reuse)
            with contextlib.suppress(psutil.NoSuchProcess):
                kid.kill()
        self._log.close()
