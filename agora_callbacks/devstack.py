"""Process supervision for ``agora-callbacks dev``: start children, watch, stop all.

Each child runs in its own session (so its own process group): a Ctrl-C in the
terminal reaches only the supervisor, which then stops the children in reverse
start order, the whole process group of each (the web server's and Celery's own
children included): SIGTERM, then SIGKILL for whatever is left after the grace
period. A child (or a process it is told to ``watch``) that exits on its own
stops the whole stack. Each child's output
is echoed line by line, prefixed with its name, as honcho does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

Echo = Callable[[str], None]


@dataclass
class Child:
    """One process of the stack. ``ready_line`` (a regex) or ``ready`` (a probe) tells
    when it is ready; with neither it is ready once started. ``start_after`` names a
    child that must be ready before this one starts (Flower after the worker, so that
    its first look at the workers gets an answer)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    ready_line: str | None = None
    ready: Callable[[], bool] | None = None
    start_after: str | None = None
    process: subprocess.Popen[bytes] | None = None
    saw_ready_line: threading.Event = field(default_factory=threading.Event)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def is_ready(self) -> bool:
        if self.process is None:
            return False
        if self.ready_line is not None and not self.saw_ready_line.is_set():
            return False
        return self.ready() if self.ready is not None else True


class DataDirInUse(RuntimeError):
    """Another ``agora-callbacks dev`` holds the lock of this data directory."""


class DataDirLock:
    """One ``dev`` per data directory: an exclusive ``flock`` on ``<dir>/dev.lock``,
    held while the stack runs and released by the kernel when the process ends, even
    by SIGKILL (no stale lock to clean up). The file holds the holder's pid, for the
    message a second ``dev`` prints."""

    FILE = "dev.lock"

    def __init__(self, directory: Path) -> None:
        self.path = directory / self.FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise ``DataDirInUse`` naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DataDirInUse(
                f"another `agora-callbacks dev` (pid {holder}) is running with the data "
                f"directory {self.path.parent}: stop it first, or start this one with "
                "another --data-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


class ChildExited(RuntimeError):
    """A child stopped while the stack was meant to be running."""

    def __init__(self, name: str, code: int | None) -> None:
        super().__init__(f"{name} exited with code {code}")
        self.name = name
        self.code = code


def _proc_group_alive(pgid: int) -> bool | None:
    """From /proc (Linux): whether a live (non-zombie) process is in group ``pgid``;
    ``None`` where /proc is not available."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def group_alive(pgid: int) -> bool:
    """Whether a live process is left in process group ``pgid`` (zombies, which an
    init that does not reap would leave forever, do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    from_proc = _proc_group_alive(pgid)
    return True if from_proc is None else from_proc


class Supervisor:
    """Starts ``children`` in order, watches them, stops them all."""

    def __init__(self, children: Sequence[Child], echo: Echo, *, stop_timeout: float = 10.0,
                 base_env: Mapping[str, str] | None = None) -> None:
        self.children = list(children)
        self.echo = echo
        self.stop_timeout = stop_timeout
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.stop_requested = threading.Event()
        self._readers: list[threading.Thread] = []
        self._watched: dict[str, subprocess.Popen[bytes]] = {}
        self._width = max((len(c.name) for c in self.children), default=4)

    # -- start -----------------------------------------------------------------
    def start(self) -> None:
        """Start every child that waits for no other (``wait_ready`` starts the rest)."""
        for child in self.children:
            if child.start_after is None:
                self._launch(child)

    def _start_due(self) -> None:
        """Start the children whose ``start_after`` child is ready."""
        by_name = {c.name: c for c in self.children}
        for child in self.children:
            if child.process is None and child.start_after is not None \
                    and by_name[child.start_after].is_ready():
                self._launch(child)

    def _launch(self, child: Child) -> None:
        env = {**self.base_env, **child.env}
        child.process = subprocess.Popen(
            list(child.argv), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        assert child.process.stdout is not None
        reader = threading.Thread(target=self._pump, args=(child, child.process.stdout),
                                  daemon=True, name=f"output-{child.name}")
        reader.start()
        self._readers.append(reader)

    def _pump(self, child: Child, stream: IO[bytes]) -> None:
        pattern = re.compile(child.ready_line) if child.ready_line else None
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            if pattern is not None and pattern.search(line):
                child.saw_ready_line.set()
            self.echo(f"{child.name:<{self._width}} | {line}")
        stream.close()

    def wait_ready(self, timeout: float) -> None:
        """Block until every child is ready; raise ``ChildExited`` if one stops first,
        ``TimeoutError`` (naming the laggards) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        pending = list(self.children)
        while pending:
            self.check()
            if self.stop_requested.is_set():
                return
            self._start_due()
            pending = [c for c in pending if not c.is_ready()]
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(c.name for c in pending)
                raise TimeoutError(f"not ready after {timeout:.0f} s: {names}")
            self.stop_requested.wait(0.1)

    # -- watch -------------------------------------------------------------------
    def watch(self, name: str, process: subprocess.Popen[bytes]) -> None:
        """Also stop the stack if ``process``, started and stopped by the caller (the
        embedded Redis), exits."""
        self._watched[name] = process

    def check(self) -> None:
        """Raise ``ChildExited`` for the first child (or watched process) that is no
        longer running."""
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                raise ChildExited(child.name, child.process.returncode)
        for name, process in self._watched.items():
            if process.poll() is not None:
                raise ChildExited(name, process.returncode)

    def run_until_stopped(self, poll: float = 0.2) -> None:
        """Return when a stop is requested; raise ``ChildExited`` if a child dies."""
        while not self.stop_requested.is_set():
            self.check()
            self.stop_requested.wait(poll)

    def request_stop(self, signum: int = 0, frame: object = None) -> None:
        """Signal handler: ask the main loop to stop (it then calls ``stop``)."""
        self.stop_requested.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    # -- stop ------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop every child, last started first; return the names that needed SIGKILL."""
        killed: list[str] = []
        for child in reversed(self.children):
            if child.process is None:
                continue
            if not self._stop_group(child):
                killed.append(child.name)
        for reader in self._readers:
            reader.join(timeout=2)
        return killed

    def _stop_group(self, child: Child) -> bool:
        """SIGTERM the child's process group, SIGKILL it after the grace period; reap
        the child. True when it stopped on SIGTERM."""
        assert child.process is not None
        pgid = child.process.pid  # leader of its own session and group
        graceful = True
        if group_alive(pgid):
            self._signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while time.monotonic() < deadline:
                child.process.poll()
                if not group_alive(pgid):
                    break
                time.sleep(0.05)
            else:
                graceful = False
                self._signal_group(pgid, signal.SIGKILL)
        try:
            child.process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            graceful = False
            child.process.kill()
            child.process.wait()
        # Grandchildren that outlived the leader are in the group too.
        deadline = time.monotonic() + self.stop_timeout
        while group_alive(pgid) and time.monotonic() < deadline:
            self._signal_group(pgid, signal.SIGKILL)
            time.sleep(0.05)
        return graceful

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signum)
