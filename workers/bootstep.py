"""Runs the intake (``workers.intake``) alongside every Celery worker.

A bootstep of the worker blueprint. It starts after the pool and runs the
intake loop in a process of its own, a child of the worker's main process
(started with ``spawn``: a fresh interpreter, nothing inherited but the
settings from the environment). Not a thread of the main process: that process
is the one that feeds the pool, acknowledges tasks and sends task events, and
in benchmarks it was the bottleneck; the intake competing with it for the GIL
cost a third of the throughput. The worker's shutdown stops the intake after
the batch in hand is settled; if the worker dies, the intake notices within a
second and exits (its unacknowledged bodies are taken over by the others).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

from celery import bootsteps

from agora_callbacks.logs import get_logger
from workers.intake import consumer_name

log = get_logger("workers.bootstep")

PARENT_CHECK_S = 0.5


def _watch_parent(parent: int, stop: Any) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        time.sleep(PARENT_CHECK_S)


def intake_main(stop: Any, consumer: str, parent: int) -> None:
    """Entry point of the intake process."""
    from workers import app as worker_app
    from workers import runtime
    from workers.intake import Intake

    rt = runtime.get()
    worker_app.load_handlers(rt.settings)
    threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    Intake(rt, consumer=consumer).run(stop)


class IntakeStep(bootsteps.StartStopStep):
    """The intake process of one worker."""

    requires = {"celery.worker.components:Pool"}
    label = "agora intake"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._ctx = multiprocessing.get_context("spawn")
        self._stop: Any = None
        self._proc: Any = None

    def start(self, parent: Any) -> None:
        self._stop = self._ctx.Event()
        # Named after the worker: "<host>:<worker pid>".
        consumer = consumer_name()
        self._proc = self._ctx.Process(target=intake_main,
                                       args=(self._stop, consumer, os.getpid()),
                                       name="agora-intake", daemon=True)
        self._proc.start()
        log.info("intake process started", pid=self._proc.pid, consumer=consumer)

    def stop(self, parent: Any) -> None:
        if self._proc is None:
            return
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(timeout=5)
        self._proc = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
