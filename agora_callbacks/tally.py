"""Counter increments on a hot path, summed per thread and handed to
prometheus_client in batches.

In multi-process mode (the ingress's granian workers) prometheus_client writes every
increment to a memory-mapped file under a lock; the ingress makes several per
request, and together they cost more than its signature check. A ``Tally`` keeps one
row of sums per thread (each thread writes only its own row: no lock on the hot
path) and adds what the rows gained to the real counters:

- every ``interval_s`` (1 s by default), from a daemon thread;
- at once on ``flush()``, which the ingress's ``GET /metrics`` calls before it
  renders, so a scrape always includes its own process's counts;
- when the process ends (interpreter exit, and the end of a ``multiprocessing``
  child such as a granian worker).

So a scrape of a multi-process tree sees the other processes' counts at most
``interval_s`` late; nothing is lost or counted twice, across forks as well (a
child starts with no rows; its parent reports its own).
"""

from __future__ import annotations

import atexit
import bisect
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from agora_callbacks import forks

Sink = Callable[[float], None]


class _Row:
    __slots__ = ("done", "owner", "values")

    def __init__(self, size: int) -> None:
        self.values = [0.0] * size  # written by the owning thread only
        self.done = [0.0] * size  # what was handed on, read and written under the lock
        self.owner = weakref.ref(threading.current_thread())


class Tally:
    """Per-thread sums of registered counters, handed on in batches."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._sinks: list[Sink] = []
        self._rows: list[_Row] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._generation = -1  # the fork generation whose rows and thread these are
        _TALLIES.add(self)

    def counter(self, sink: Sink) -> int:
        """Register ``sink`` (a counter's ``inc``); return the slot to ``add`` to."""
        with self._lock:
            self._sinks.append(sink)
            for row in self._rows:
                row.values.append(0.0)
                row.done.append(0.0)
            return len(self._sinks) - 1

    def add(self, slot: int, amount: float = 1.0) -> None:
        """Count ``amount`` on ``slot`` (from any thread; no lock)."""
        local = self._local
        row: _Row | None = getattr(local, "row", None)
        if row is None or local.generation != forks.generation:
            row = self._new_row()
        row.values[slot] += amount

    def flush(self) -> None:
        """Hand every count made so far on to the sinks."""
        with self._lock:
            if self._generation != forks.generation:
                return  # this process has counted nothing yet (rows are a parent's)
            sinks = self._sinks
            for row in list(self._rows):
                # Whether the owner is gone is settled before its row is read: a thread
                # that ended can add nothing more, so its row can then be dropped.
                owner = row.owner()
                ended = owner is None or not owner.is_alive()
                for slot, done in enumerate(row.done):
                    value = row.values[slot]
                    if value != done:
                        sinks[slot](value - done)
                        row.done[slot] = value
                if ended:
                    self._rows.remove(row)  # everything it counted is handed on

    def _new_row(self) -> _Row:
        with self._lock:
            if self._generation != forks.generation:
                self._start()
            row = _Row(len(self._sinks))
            self._rows.append(row)
        self._local.row = row
        self._local.generation = forks.generation
        return row

    def _start(self) -> None:
        """First count in this process (or fork): a fresh set of rows and its thread."""
        self._generation = forks.generation
        self._rows = []
        threading.Thread(target=self._run, name="metrics-tally", daemon=True).start()
        atexit.register(self.flush)
        from multiprocessing import util

        util.Finalize(None, self.flush, exitpriority=100)  # atexit skips mp children

    def _run(self) -> None:
        generation = forks.generation
        while generation == forks.generation:
            time.sleep(self.interval_s)
            self.flush()


class Tallied:
    """A counter (or labelled child) whose ``inc`` goes through a ``Tally``."""

    __slots__ = ("_slot", "_tally")

    def __init__(self, tally: Tally, sink: Sink) -> None:
        self._tally = tally
        self._slot = tally.counter(sink)

    def inc(self, amount: float = 1.0) -> None:
        self._tally.add(self._slot, amount)


class TalliedHistogram:
    """A histogram child whose ``observe`` goes through a ``Tally``: one slot per bucket
    and one for the sum, handed on to the child's bucket and sum values (what its own
    ``observe`` increments). A histogram without those parts (another
    prometheus_client) is observed directly."""

    __slots__ = ("_bounds", "_direct", "_slots", "_sum", "_tally")

    def __init__(self, tally: Tally, histogram: Any) -> None:
        self._tally = tally
        bounds = getattr(histogram, "_upper_bounds", None)
        buckets = getattr(histogram, "_buckets", None)
        total = getattr(histogram, "_sum", None)
        self._direct = None
        if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
            self._direct = histogram
            return
        self._bounds = list(bounds)
        self._slots = [tally.counter(bucket.inc) for bucket in buckets]
        self._sum = tally.counter(total.inc)

    def observe(self, amount: float) -> None:
        if self._direct is not None:
            self._direct.observe(amount)
            return
        self._tally.add(self._sum, amount)
        # The first bucket whose upper bound is >= amount, as Histogram.observe picks.
        self._tally.add(self._slots[bisect.bisect_left(self._bounds, amount)])


_TALLIES: weakref.WeakSet[Tally] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for tally in list(_TALLIES):
        tally._lock = threading.Lock()  # a parent's thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)
