"""Scripted scenarios: the shortest runs found for what the random runs found.

Each one drives the simulation's workers and executors by hand (no random fault:
every fault is placed), then settles and checks as a random run does. They run
as tests (``tests/test_simulation.py``), strict xfails while the bug they show is
there.
"""

from __future__ import annotations

from collections.abc import Callable

from .scheduler import Op
from .traffic import Sent, event_body
from .world import Executor, Rates, Result, Simulation

#: Known gaps are violations here (``strict``): a scenario shows one.
NO_FAULTS = Rates(error_before=0, error_after=0, error_partial=0, kill_intake=0,
                  kill_executor=0, stall=0, script_flush=0, rollback=0, msg_lost=0,
                  msg_dup=0, publish_error=0, handler_retry=0, handler_fail=0,
                  global_pause=0)


def _until(sim: Simulation, op: Op, done: Callable[[Op], bool]) -> None:
    """Resume ``op`` until ``done(op)`` (or it ends)."""
    while not op.done and not done(op):
        _tick(sim)
        sim.resume(op)


def _tick(sim: Simulation) -> None:
    sim.step_no += 1
    sim.model.step = sim.step_no
    sim.model.now = sim.sched.now


def _store(sim: Simulation, sid: str, seq: int, event_type: int = 40) -> None:
    notice = f"scn{sid}{seq}"
    sim.store(Sent(event_body(notice, event_type, sim.sched.now, sid, seq), "ordered", sid,
                   seq, event_type, notice))


def _take_in(sim: Simulation) -> None:
    w = sim.intakes[0]
    w.start("read")
    assert w.op is not None
    _until(sim, w.op, lambda op: False)


def _deliver(sim: Simulation, e: Executor) -> Op:
    assert sim.deliver(e), "no message to deliver"
    assert e.op is not None
    return e.op


def second_script_flush_during_a_start(url: str) -> Result:
    """A handler's start meets NOSCRIPT twice (the script cache is flushed again
    between ``_one``'s SCRIPT LOAD and its second EVALSHA); the task fails, Celery's
    on_failure records a final failure under its task id, which holds the handler
    (an earlier delivery of the same task started it and still runs): the turn ends
    and the next event's handler starts while the first delivery runs."""
    sim = Simulation(url, 0, rates=NO_FAULTS, sids=1, strict=True)
    sid = sim.sids[0]

    def drive() -> None:
        sim.faulting = False
        _store(sim, sid, 0)
        _store(sim, sid, 1)
        _take_in(sim)  # admits 0 and 1, takes 0, publishes its handler task
        a, b, c = sim.executors[:3]
        first = _deliver(sim, a)
        _until(sim, first, lambda op: op.where == "handler running")  # started, runs on
        sim.advance(sim.settings.handler_visibility_timeout_s * 1000 + 100)
        sim.broker.redeliver_expired()  # still unacknowledged: delivered again
        again = _deliver(sim, b)  # the same task id
        _until(sim, again, lambda op: op.where == "start")
        sim.admin.script_flush()
        sim.resume(again)  # NOSCRIPT: _one loads the scripts...
        _until(sim, again, lambda op: op.where == "start")
        sim.admin.script_flush()  # ...and the cache is flushed again before its retry
        _until(sim, again, lambda op: False)
        if sim.broker.deliverable():  # the turn ended: the next event's handler
            nxt = _deliver(sim, c)
            _until(sim, nxt, lambda op: op.where == "handler running")
        sim.check()

    return sim.play(drive)


def unordered_failure_while_redis_is_away(url: str) -> Result:
    """An event without ordering: its handler fails for good while Redis is away
    for longer than REDIS_RETRY_S, and its finish gives up; the handler's deadline
    (it is the only event of a recording of its own) still dead-letters it once."""
    sim = Simulation(url, 0, rates=NO_FAULTS, sids=1, strict=True)

    def drive() -> None:
        sim.faulting = False
        sim.rates.handler_fail = 1.0  # the handler fails for good
        sim.store(Sent(event_body("scnunordered", 40, sim.sched.now, None, None),
                       "unordered", notice_id="scnunordered"))
        _take_in(sim)
        e = sim.executors[0]
        run = _deliver(sim, e)
        _until(sim, run, lambda op: op.where == "handler running")
        sim.resume(run)  # the handler fails; its finish is next
        # Redis away: every round trip of the finish fails until retrying gives up.
        while not run.done:
            away = run.where not in ("sleep", "ack", "handler running", "publish")
            if run.where == "sleep":  # the retry's backoff takes its (virtual) time
                sim.advance(max(0, run.wake_at - sim.sched.now))
            _tick(sim)
            sim.sched.resume(run, "before" if away else None)
            sim._reap()
        sim.rates.handler_fail = 0.0

    return sim.play(drive)
