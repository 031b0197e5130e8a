"""Runs the intake (``workers.intake``) alongside every Celery worker, and keeps it running.

A bootstep of the worker blueprint. It starts after the pool and runs the
intake loop in a process of its own, a child of the worker's main process
(started with ``spawn``: a fresh interpreter, nothing inherited but the
settings from the environment). Not a thread of the main process: that process
is the one that feeds the pool, acknowledges tasks and sends task events, and
in benchmarks it was the bottleneck; the intake competing with it for the GIL
cost a third of the throughput. The worker's shutdown stops the intake after
the batch in hand is settled; if the worker dies, the intake notices within a
second and exits (its unacknowledged bodies are taken over by the others).

The intake is watched: a thread of the main process waits on the intake
process, and when it dies (killed, out of memory, a crash) starts a new one
under the same consumer name, logging ``intake process died``. The new process
takes its predecessor's unacknowledged bodies back with ``XAUTOCLAIM`` after
``CLAIM_IDLE_MS``, as any worker would. Restarts are bounded: the first one in
a window of ``RESTART_WINDOW_S`` is immediate, the next ones wait
``RESTART_BACKOFF_S``; a death beyond ``MAX_RESTARTS`` in the window takes the
whole worker down (warm shutdown, exit status 1, ``intake keeps dying`` logged
as critical), so that a supervisor sees a failed worker rather than one that
looks healthy and reads nothing.

An intake started while Redis is unreachable (the worker started before it, or
a restart during an outage) waits for Redis, logging ``intake waiting for
Redis`` once, instead of failing its first command and dying: an outage is not
a crash, and must not use up the restarts.

An intake can also hang without dying (stopped by SIGSTOP, deadlocked, stuck in
a call): its loop marks the time of each round in memory shared with the worker,
and once started, an intake whose loop has not gone round for ``INTAKE_HUNG_S``
is down for health checks, and the watcher kills it (``intake process hung``
logged as an error); it is then restarted as any dead intake.

``up()`` says whether the intake is running: its process is alive, has finished
starting (Redis answered) and is not hung (``workers.metrics_server`` exports it
as ``acb_worker_intake_up`` and answers ``/healthz`` with it).
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from typing import Any

import redis
import setproctitle
from celery import bootsteps
from celery.exceptions import WorkerShutdown
from celery.platforms import EX_FAILURE

from agora_callbacks.logs import get_logger
from agora_callbacks.workers.intake import consumer_name

log = get_logger("workers.bootstep")

PARENT_CHECK_S = 0.5
#: The intake process's title in ``ps`` (followed by its consumer name).
PROCESS_TITLE = "agora-callbacks intake"

#: Deaths of the intake tolerated within ``RESTART_WINDOW_S``; one more stops the worker.
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
#: Wait before the 1st, 2nd, ... restart within the window (the last value repeats).
RESTART_BACKOFF_S = (0.0, 1.0, 2.0, 4.0, 8.0)
#: How long a stopping intake may take to settle its batch before it is terminated.
STOP_TIMEOUT_S = 10.0
#: How often an intake waiting for Redis at its start tries again.
REDIS_WAIT_S = 1.0


def _hung_after_s() -> float:
    """``INTAKE_HUNG_S`` of this worker's settings."""
    from agora_callbacks.workers import runtime

    return float(runtime.get().settings.intake_hung_s)


def _watch_parent(parent: int, stop: Any) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()
            return
        time.sleep(PARENT_CHECK_S)


def _wait_for_redis(client: redis.Redis, stop: Any) -> bool:
    """Until Redis answers (True) or ``stop`` is set (False)."""
    logged = False
    while not stop.is_set():
        try:
            client.ping()
            return True
        except redis.RedisError as exc:
            if not logged:
                log.warning("intake waiting for Redis", error=str(exc))
                logged = True
            stop.wait(REDIS_WAIT_S)
    return False


def intake_main(stop: Any, consumer: str, parent: int, ready: Any = None,
                beat: Any = None) -> None:
    """Entry point of the intake process. ``ready`` is set once Redis answered and
    the intake is about to read; ``beat`` (a shared double) takes the
    ``time.monotonic()`` of each round of its loop."""
    from agora_callbacks.workers import app as worker_app
    from agora_callbacks.workers import runtime
    from agora_callbacks.workers.intake import Intake

    # Stopped by its worker only (``stop``, or the worker's death): a SIGTERM or
    # Ctrl-C sent to the whole process group must not kill it mid-batch, nor look
    # like a crash to the watcher while the worker shuts down.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Its name in ps/top, instead of a copy of the worker's python command line.
    setproctitle.setproctitle(f"{PROCESS_TITLE} {consumer}")
    rt = runtime.get()
    worker_app.load_handlers(rt.settings)
    threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    if not _wait_for_redis(rt.client, stop):
        return
    _announce_task_queues(rt.client)
    intake = Intake(rt, consumer=consumer)
    on_round = None
    if beat is not None:
        def on_round() -> None:
            beat.value = time.monotonic()

        on_round()
    if ready is not None:
        ready.set()
    intake.run(stop, on_round)


def _announce_task_queues(client: Any) -> None:
    """Record the queue of every handler and hook task registered here, for
    redrives (``agora_callbacks.task_queues``); best effort: without it a redrive
    goes to the default queue."""
    from agora_callbacks import task_queues
    from agora_callbacks.workers.hooks import HOOKS
    from agora_callbacks.workers.registry import REGISTRY, routed_queue

    queues = {h.name: routed_queue(h.name) for registry in (REGISTRY, HOOKS)
              for h in registry.handlers.values() if h.task is not None}
    try:
        task_queues.announce(client, queues)
    except redis.RedisError as exc:
        log.warning("task queues not recorded; a redrive goes to the default queue",
                    error=str(exc))


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit status {exitcode}"


class IntakeStep(bootsteps.StartStopStep):
    """The intake process of one worker, restarted when it dies."""

    requires = {"celery.worker.components:Pool"}
    label = "agora intake"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._ctx = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._stop: Any = None
        self._ready: Any = None
        self._beat: Any = None
        self._proc: Any = None
        self._watcher: threading.Thread | None = None
        self._deaths: deque[float] = deque()
        self.consumer = ""
        #: Intake processes started again after one died, since the worker started.
        self.restarts = 0
        #: Seconds without a round of its loop after which a started intake is hung
        #: (``INTAKE_HUNG_S``, read when the step starts: no intake runs before).
        self.hung_after_s = math.inf

    # -- state seen by health checks --------------------------------------------
    def up(self) -> bool:
        """Whether the intake process is alive, past its start-up and not hung."""
        proc, ready = self._proc, self._ready
        return bool(proc is not None and ready is not None and ready.is_set()
                    and proc.exitcode is None and proc.is_alive()
                    and self.silent_for() <= self.hung_after_s)

    def silent_for(self) -> float:
        """Seconds since the started intake's last round (0 before it started)."""
        ready, beat = self._ready, self._beat
        if ready is None or beat is None or not ready.is_set():
            return 0.0
        return max(0.0, time.monotonic() - float(beat.value))

    # -- lifecycle ----------------------------------------------------------------
    def start(self, parent: Any) -> None:
        self._stopping.clear()
        self.hung_after_s = _hung_after_s()
        # Named after the worker: "<host>:<worker pid>"; a restarted intake keeps it.
        self.consumer = consumer_name()
        with self._lock:
            self._launch()
        self._watcher = threading.Thread(target=self._watch, args=(parent,),
                                         name="agora-intake-watch", daemon=True)
        self._watcher.start()

    def _launch(self) -> None:
        self._stop = self._ctx.Event()
        self._ready = self._ctx.Event()
        self._beat = self._ctx.Value("d", time.monotonic(), lock=False)
        self._proc = self._ctx.Process(
            target=intake_main,
            args=(self._stop, self.consumer, os.getpid(), self._ready, self._beat),
            name="agora-intake", daemon=True)
        self._proc.start()
        log.info("intake process started", pid=self._proc.pid, consumer=self.consumer)

    def _watch(self, parent: Any) -> None:
        while not self._stopping.is_set():
            proc = self._proc
            if proc is None:
                return
            multiprocessing.connection.wait([proc.sentinel], timeout=1.0)
            if proc.exitcode is None and not self._stopping.is_set():
                self._kill_if_hung(proc)
            if proc.exitcode is None or self._stopping.is_set():
                continue
            now = time.monotonic()
            self._deaths.append(now)
            while self._deaths and self._deaths[0] < now - RESTART_WINDOW_S:
                self._deaths.popleft()
            deaths = len(self._deaths)
            if deaths > MAX_RESTARTS:
                log.critical("intake keeps dying: stopping the worker", pid=proc.pid,
                             exit=_describe_exit(proc.exitcode), deaths=deaths,
                             window_s=RESTART_WINDOW_S)
                self._shut_worker_down(parent)
                return
            delay = RESTART_BACKOFF_S[min(deaths, len(RESTART_BACKOFF_S)) - 1]
            log.error("intake process died: restarting it", pid=proc.pid,
                      exit=_describe_exit(proc.exitcode), consumer=self.consumer,
                      deaths_in_window=deaths, delay_s=delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self._launch()
                self.restarts += 1

    def _kill_if_hung(self, proc: Any) -> None:
        """SIGKILL the intake if its loop has not gone round for ``hung_after_s``
        (the watcher then sees it dead and restarts it)."""
        silent = self.silent_for()
        if silent <= self.hung_after_s:
            return
        log.error("intake process hung: killing it", pid=proc.pid, consumer=self.consumer,
                  silent_s=round(silent, 1), limit_s=self.hung_after_s)
        proc.kill()
        proc.join(timeout=5)

    @staticmethod
    def _shut_worker_down(parent: Any) -> None:
        """A warm shutdown of the worker with exit status 1, from this thread: the
        event loop raises ``WorkerShutdown`` (as Celery's own shutdown does) when it
        runs the callback; without an event loop (solo or threads pool), SIGTERM."""
        hub = getattr(parent, "hub", None)
        if hub is not None:
            def shutdown() -> None:
                raise WorkerShutdown(EX_FAILURE)

            hub.call_soon(shutdown)
        else:
            os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, parent: Any) -> None:
        self._stopping.set()
        with self._lock:
            proc, stop = self._proc, self._stop
            self._proc = None
        if proc is not None:
            stop.set()
            proc.join(timeout=STOP_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()  # it ignores SIGTERM
                proc.join(timeout=5)
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
