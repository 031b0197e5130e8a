"""Which fork of the process this is: a cheap "has this process forked since?" test
for per-process resources (connections, threads) on hot paths, where calling
``os.getpid()`` (a system call) on every request would cost more than the check.

``generation`` starts at 0 and goes up by one in every child ``os.fork`` creates
(multiprocessing's fork workers, granian's and Celery's pool processes included);
``pid`` is the process id, read once per process.
"""

from __future__ import annotations

import os

generation = 0
#: ``os.getpid()``, kept up to date across forks.
pid = os.getpid()


def _after_fork_in_child() -> None:
    global generation, pid
    generation += 1
    pid = os.getpid()


def process_id() -> int:
    """This process's id without a system call."""
    return pid


os.register_at_fork(after_in_child=_after_fork_in_child)
