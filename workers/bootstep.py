"""Runs the intake (``workers.intake``) inside every Celery worker.

A bootstep of the worker blueprint: it starts after the pool (so prefork
children are forked before the thread exists) and runs the intake loop in a
thread of the worker's main process; the worker's shutdown stops it and waits
for the batch in hand to be settled.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps

from agora_callbacks.logs import get_logger
from workers import runtime
from workers.intake import Intake

log = get_logger("workers.bootstep")


class IntakeStep(bootsteps.StartStopStep):
    """The intake thread of one worker process."""

    requires = {"celery.worker.components:Pool"}
    label = "agora intake"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        intake = Intake(runtime.get())
        self._stop.clear()
        self._thread = threading.Thread(target=intake.run, args=(self._stop,),
                                        name="agora-intake", daemon=True)
        self._thread.start()

    def stop(self, parent: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
