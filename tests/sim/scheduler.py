"""A deterministic baton-passing scheduler over threads, and the virtual clock.

Every worker operation (an intake round, a takeover, a timer sweep, a handler
task) runs the real code in its own thread, but only one thread runs at a time:
the scheduler hands the baton to one operation, which runs until its next
*checkpoint* (every Redis round trip, every publish, every clock read or sleep)
and hands it back. Between two checkpoints the scheduler may do anything: move
the virtual clock, run other operations, inject a fault, or keep the operation
paused for as long as it likes (a stall past a lease). A paused operation can
be killed: its next resume raises ``Killed`` (a ``BaseException``, so no
``except Exception`` in the code under test swallows it), which unwinds its
thread as a process death would end it.

All choices come from one ``random.Random(seed)``, and Redis sees one command
at a time, so a run is a function of its seed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Killed(BaseException):
    """Raised inside an operation whose worker died."""


class Op:
    """One operation of one actor, running in its own thread under the baton."""

    def __init__(self, sched: Scheduler, actor: Any, kind: str, fn: Callable[[], Any]) -> None:
        self.sched = sched
        self.actor = actor
        self.kind = kind
        self.fn = fn
        self.go = threading.Semaphore(0)
        self.done = False
        self.killed = False
        self.error: BaseException | None = None
        self.result: Any = None
        self.kill = False
        self.wake_at = 0  # virtual ms: not resumed before (a sleep, a stall)
        self.where = "begin"  # what the op is about to do at its checkpoint
        self.fault: str | None = None  # the fault to apply at this round trip
        self.fail_next: str | None = None  # forced fault (Redis restarted meanwhile)
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"sim-{kind}")
        self.thread.start()

    def _main(self) -> None:
        self.go.acquire()
        try:
            if self.kill:
                raise Killed
            self.result = self.fn()
        except Killed:
            self.killed = True
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True
            self.sched.current = None
            self.sched.baton.release()

    def checkpoint(self, where: str, round_trip: bool = False) -> str | None:
        """Hand the baton back; return the fault chosen for what comes next (for a
        Redis round trip, a pending ``fail_next`` first)."""
        if self.kill:
            raise Killed
        self.where = where
        self.fault = None
        self.sched.current = None
        self.sched.baton.release()
        self.go.acquire()
        if self.kill:
            raise Killed
        fault, self.fault = self.fault, None
        if round_trip and self.fail_next is not None:
            fault, self.fail_next = self.fail_next, None
        return fault


class Scheduler:
    """The baton: ``resume(op)`` runs ``op`` until its next checkpoint or its end."""

    def __init__(self) -> None:
        self.baton = threading.Semaphore(0)
        self.current: Op | None = None
        self.now = 0  # virtual unix ms

    def spawn(self, actor: Any, kind: str, fn: Callable[[], Any]) -> Op:
        return Op(self, actor, kind, fn)

    def resume(self, op: Op, fault: str | None = None) -> None:
        assert not op.done
        op.fault = fault
        self.current = op
        op.go.release()
        if not self.baton.acquire(timeout=60):
            raise RuntimeError(f"operation {op.kind} of {op.actor} did not hand the baton "
                               f"back within 60 s (a real wait inside the code under test?)")

    def kill(self, op: Op) -> None:
        """End a paused operation as a process death would (it unwinds at once)."""
        if op.done:
            return
        op.kill = True
        self.resume(op)

    def checkpoint(self, where: str, round_trip: bool = False) -> str | None:
        """Called from inside an operation (by the client, the clock, the broker)."""
        op = self.current
        if op is None:
            return None  # outside any operation: the test's own calls
        return op.checkpoint(where, round_trip)


class VirtualClock:
    """The clock of the simulated workers (``workers.ordering.clock`` interface).

    ``script_ms`` and ``now_ms`` read the scheduler's virtual time; ``now_ms`` is a
    round trip in production (Redis ``TIME``), so it is a checkpoint here and may
    fail like one. ``sleep`` pauses the operation until the virtual time has moved
    on by ``seconds``.
    """

    def __init__(self, sched: Scheduler, on_fault: Callable[[str, str], None]) -> None:
        self.sched = sched
        self.on_fault = on_fault

    def script_ms(self) -> int:
        return self.sched.now

    def now_ms(self, client: Any) -> int:
        fault = self.sched.checkpoint("TIME", round_trip=True)
        if fault is not None:
            self.on_fault(fault, "TIME")
        return self.sched.now

    def monotonic(self) -> float:
        """Seconds on the virtual clock (for a ``retrying`` that reads the runtime's
        clock for the attempts' own time, as the report suggests)."""
        return self.sched.now / 1000

    def sleep(self, seconds: float) -> None:
        op = self.sched.current
        if op is None:
            return
        op.wake_at = self.sched.now + max(1, int(seconds * 1000))
        op.checkpoint("sleep")
