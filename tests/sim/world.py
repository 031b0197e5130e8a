"""The simulation: several workers and handler executors running the real code
against one real Redis, under a seeded scheduler that injects faults.

``Simulation(url, seed).run(steps)`` drives ``steps`` scheduler steps with faults,
then settles (faults and traffic stop, virtual time moves on until nothing is
left to do) and checks the settled promises. Each step is one of: resume a paused
operation up to its next round trip (possibly failing that round trip), start an
operation on an idle worker (an intake read, a takeover, a timer sweep) or
executor (a handler task from the broker), store callbacks, move the clock, or a
fault (a worker or executor dies, an operation stalls past a lease, ``SCRIPT
FLUSH``, Redis restarts from a snapshot up to a second old). The model
(``model.py``) checks the step invariants after every step.

The code driven is the workers' own: ``Intake.process(read())`` and
``process(autoclaim())``, ``timers.sweep(Dispatcher(rt))``, ``Dispatcher.dispatch``,
``handler_start`` and ``handler_done``, built with ``Runtime.build(settings,
client=..., clock=..., publish=...)`` and ``Intake(rt, consumer=..., client=...)``.

One departure from production, on purpose: ``XAUTOCLAIM``'s idle time is measured
by Redis on its real clock, which the virtual clock cannot move, so the workers run
with ``claim_idle_ms=0`` (every takeover takes whatever is pending, as if its owner
had stalled past ``CLAIM_IDLE_MS``). Takeovers are scheduled at the production
cadence (``Intake.run``'s, from the configured ``CLAIM_IDLE_MS``, in virtual
time); a takeover of a worker that is only briefly paused is a superset of what
production allows, so it can only find more, not hide anything. For the same
reason the removal of idle consumers (``workers.consumers``, idle a minute on
Redis's clock) is not driven.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
import structlog

from agora_callbacks import inbox, keys, logs, recordings_index
from agora_callbacks.settings import Settings
from agora_callbacks.workers import timers
from agora_callbacks.workers.dispatch import FOLD_SLOT, Dispatcher
from agora_callbacks.workers.intake import CLAIM_INTERVAL_S, SWEEP_INTERVAL_S, Intake
from agora_callbacks.workers.ordering import Failure
from agora_callbacks.workers.registry import REGISTRY, Handler
from agora_callbacks.workers.runtime import Runtime

from .broker import Broker, Message, PublishError
from .faulty import faulty_client, raise_fault
from .model import Model, Run
from .scheduler import Op, Scheduler, VirtualClock
from .traffic import Sent, Traffic, meta_for

T0 = 1_900_000_000_000  # virtual unix ms at the start of every run


def violation_kinds(violations: list[str]) -> set[str]:
    """The kinds of ``Model.violate``'s lines (``step <n> t=<ms> <kind>: <detail>``;
    the last word of a kind of two: ``fold order`` is ``order``)."""
    return {v.split(": ")[0].split()[-1] for v in violations}


def notice_of(key: str) -> str:
    """The noticeId of an event without ordering, from its dedupe key."""
    return key.partition(":")[2] if key.startswith("notice:") else key

SIM_ENV = {
    "REORDER_HOLD_MS": "1000",
    "CLAIM_IDLE_MS": "500",
    "DISPATCH_LEASE_MS": "500",
    "HANDLER_DEADLINE_S": "12",
    "HANDLER_VISIBILITY_TIMEOUT_S": "5",
    "DEDUPE_TTL_S": "3600",
    "REDIS_RETRY_S": "1",
    "REDIS_TIMEOUT_S": "0.5",
    "INTAKE_BATCH": "8",
}

#: Handlers registered for the run (names: no ',' '|' or newline).
SIM_HANDLERS: dict[str, tuple[Any, ...]] = {
    "sim.alpha": (40, 41, 31, 30, 11),
    "sim.beta": ("uploaded", 77),
}


def sim_settings(url: str) -> Settings:
    env = dict(SIM_ENV, REDIS_URL=url)
    return Settings.from_env(env)


def _handlers_for(settings: Settings) -> Any:
    """The handler slots of an event: its handlers, or the fold's own slot (the
    intake gives it to an event without handler while the record is kept)."""
    def names(event_type: int, msg_name: str | None) -> tuple[str, ...]:
        found = REGISTRY.names_for(event_type, msg_name)
        return found or ((FOLD_SLOT,) if settings.builtin_handlers else ())
    return names


@contextmanager
def pruning_once() -> Iterator[None]:
    """The dashboard index's prune (``recordings_index.prune_due``: a process's first
    save, then at most once a minute of wall-clock time; one more round trip) runs at
    the first save of the run only, so that a seed replays exactly whatever the wall
    clock did before it."""
    original = recordings_index.prune_due
    first = [True]

    def due() -> bool:
        was, first[0] = first[0], False
        return was

    recordings_index.prune_due = due  # type: ignore[assignment]
    try:
        yield
    finally:
        recordings_index.prune_due = original  # type: ignore[assignment]


@contextmanager
def registered_handlers() -> Iterator[None]:
    """The simulation's handlers, and only they, for the run (no Celery task: the
    broker is simulated). Handlers that other tests of the same process registered
    are set aside meanwhile: with them an event would get more slots, and a seed
    would not replay the same run in the whole suite as alone."""
    others = list(REGISTRY.handlers.values())
    for handler in others:
        REGISTRY.remove(handler.name)
    for name, selectors in SIM_HANDLERS.items():
        REGISTRY.add(Handler(name=name, fn=lambda event: None, kwargs=frozenset()),
                     selectors)
    try:
        yield
    finally:
        for name in SIM_HANDLERS:
            REGISTRY.remove(name)
        for handler in others:
            REGISTRY.add(handler, tuple(handler.selectors))


@contextmanager
def quiet_logs() -> Iterator[None]:
    """Drop the workers' log lines during a run (a fault makes many)."""
    old = structlog.get_config()

    def drop(*_a: Any) -> Any:
        raise structlog.DropEvent

    structlog.configure(processors=[drop], cache_logger_on_first_use=False,
                        wrapper_class=structlog.make_filtering_bound_logger(50))
    logs._generation += 1  # the workers' loggers bind again (see logs._NamedLogger)
    try:
        yield
    finally:
        structlog.configure(**old)
        logs._generation += 1


def fresh_runtime(sim: Simulation) -> tuple[Any, Runtime]:
    """A new process's Redis client (faults injected through the simulation's hook)
    and runtime: the simulation's settings, clock and broker."""
    client = faulty_client(sim.url, Hook(sim))
    return client, Runtime.build(sim.settings, client=client, clock=sim.clock,
                                 publish=sim.broker.publish)


@dataclass
class Rates:
    """Probabilities of the faults (per step, or per round trip for errors)."""

    error_before: float = 0.03
    error_after: float = 0.03
    error_partial: float = 0.01
    kill_intake: float = 0.004
    kill_executor: float = 0.004
    stall: float = 0.01
    script_flush: float = 0.002
    rollback: float = 0.0015
    msg_lost: float = 0.02
    msg_dup: float = 0.03
    publish_error: float = 0.02
    handler_retry: float = 0.06
    handler_fail: float = 0.04
    global_pause: float = 0.005  # of the clock moves: everything pauses 2-14 s
    long_stalls: bool = True  # stalls past HANDLER_VISIBILITY_TIMEOUT_S / _DEADLINE_S
    #: Whether a handler may end dead-lettered as ``lost``. Only the faults above can
    #: make a handler miss its deadline legitimately; without them (``gentle``), a
    #: ``lost`` dead letter is a liveness violation (nothing else catches a turn
    #: that is never published again, say).
    lost_ok: bool = True
    traffic: float = 0.06  # share of the steps that store callbacks
    jump_ms: int = 1500  # the longest of the medium clock moves (1 in 7 or so)

    @classmethod
    def gentle(cls) -> Rates:
        """Every fault except those that may legitimately make a handler late past
        its deadline: no rollback, no global pause, no stall past the visibility
        timeout or the deadline; and less traffic, so that the handler queue keeps
        up (a message waiting in the queue for longer than the deadline is lost
        legitimately: ``HANDLER_DEADLINE_S`` must exceed the longest wait in the
        queue; a run whose queue fell that far behind anyway is not judged on
        liveness, and says so in its outcomes as ``queue_overloaded``)."""
        return cls(rollback=0.0, global_pause=0.0, long_stalls=False, lost_ok=False,
                   traffic=0.03, jump_ms=400)


class Hook:
    """What the faulty client of one actor calls at every round trip."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def round_trip(self, label: str, pipeline: int = 0) -> str | None:
        fault = self.sim.sched.checkpoint(label, round_trip=True)
        if fault == "partial" and pipeline < 2:
            fault = "before"
        if fault is not None:
            self.sim.faults["redis_" + fault] += 1
        return fault

    def now(self) -> int:
        return self.sim.sched.now

    def partial_cut(self, n: int) -> int:
        return self.sim.rng.randint(1, n - 1)

    def observe(self, name: str, args: list[Any], reply: Any) -> None:
        self.sim.model.observe(name, args, reply)


class IntakeWorker:
    """One intake process: reads, takes over, sweeps, one operation at a time."""

    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.index = index
        self.incarnation = 0
        self.op: Op | None = None
        self.down_until = 0
        self.next_claim = 0
        self.next_sweep = 0
        self.boot()

    def __repr__(self) -> str:
        return f"intake{self.index}.{self.incarnation}"

    def boot(self) -> None:
        self.incarnation += 1
        self.client, self.rt = fresh_runtime(self.sim)
        self.intake = Intake(self.rt, consumer=repr(self), client=self.client)
        # Reads never block here (no BLOCK argument): a blocked XREADGROUP would wait
        # on Redis's real clock (in steps of its 100 ms cron), outside virtual time.
        self.intake.block_ms = None  # type: ignore[assignment]

    def die(self) -> None:
        self.sim.model.note(f"{self!r} DIES")
        if self.op is not None:
            self.sim.sched.kill(self.op)
            self.op = None
        self.client.close()
        self.down_until = self.sim.sched.now + self.sim.rng.randint(0, 2000)
        self.boot()  # a new process (new consumer name), idle until down_until

    def start(self, kind: str) -> None:
        intake = self.intake
        fn: Callable[[], Any]
        if kind == "read":
            def fn() -> Any:
                return intake.process(intake.read())
        elif kind == "claim":
            # Intake.run's cadence: min(CLAIM_INTERVAL_S, CLAIM_IDLE_MS / 2000), with
            # the configured CLAIM_IDLE_MS (see the module docstring).
            every_s = min(CLAIM_INTERVAL_S, self.sim.claim_idle_ms / 2000)
            self.next_claim = self.sim.sched.now + int(every_s * 1000)

            def fn() -> Any:
                return intake.process(intake.autoclaim())
        else:
            self.next_sweep = self.sim.sched.now + int(SWEEP_INTERVAL_S * 1000)

            def fn() -> Any:
                return timers.sweep(intake.dispatcher)
        self.op = self.sim.sched.spawn(self, kind, fn)
        self.sim.model.note(f"{self!r} begins {kind}")


class Executor:
    """One handler pool process: runs one handler task at a time."""

    def __init__(self, sim: Simulation, index: int) -> None:
        self.sim = sim
        self.index = index
        self.incarnation = 0
        self.op: Op | None = None
        self.run: Run | None = None
        self.msg: Message | None = None
        self.down_until = 0
        self.boot()

    def __repr__(self) -> str:
        return f"executor{self.index}.{self.incarnation}"

    def boot(self) -> None:
        self.incarnation += 1
        self.client, self.rt = fresh_runtime(self.sim)
        self.dispatcher = Dispatcher(self.rt)

    def die(self) -> None:
        self.sim.model.note(f"{self!r} DIES")
        if self.op is not None:
            self.sim.sched.kill(self.op)
            self.op = None
        if self.run is not None and self.run.active:
            self.sim.model.ended(self.run, completed=False)
        self.run = None
        if self.msg is not None and self.sim.rng.random() < 0.5:
            # Only the pool process died: its parent rejects the message with requeue
            # (task_reject_on_worker_lost); otherwise it waits for the visibility timeout.
            self.sim.broker.requeue(self.msg)
        self.msg = None
        self.client.close()
        self.down_until = self.sim.sched.now + self.sim.rng.randint(0, 2000)
        self.boot()

    def start(self, msg: Message) -> None:
        self.op = self.sim.sched.spawn(self, "handler", lambda: self.handle(msg))
        self.sim.model.note(f"{self!r} begins {msg.name} task={msg.task_id} "
                            f"args={msg.args[:3]} delivery={msg.deliveries}")

    def handle(self, msg: Message) -> None:
        """A handler task as ``workers.task.HandlerTask`` runs it under the app's
        Celery settings (acks late, acks on failure, rejects on a lost worker)."""
        sim = self.sim
        self.msg = msg
        sid, member, key, late, _gap, _meta, _body = msg.args
        name, task_id = msg.name, msg.task_id
        d = self.dispatcher
        began = sim.sched.now
        try:
            granted = d.handler_start(sid, member, key, name, task_id)
        except redis.RedisError as exc:
            self._gave_up("start", began, exc)
            # run_handler raised: Celery calls on_failure, which records the failure
            # (finish applies only if this task holds the handler), then acks.
            ident = (sid, member if sid else notice_of(key), name)
            sim.model.gave_up.add(ident)
            # on_failure records a final failure only for a started run: nothing here.
            sim.model.note(f"{self!r} start of {ident} task={task_id} raised "
                           f"{type(exc).__name__}: on_failure records nothing")
            self._ack(msg)
            return
        if not granted:
            self._ack(msg)
            return
        self.run = sim.model.granted(sid, member, key, name, task_id, bool(late), repr(self))
        op = sim.sched.current
        assert op is not None
        # The handler runs: virtual time passes (it may also be stalled here).
        op.wake_at = sim.sched.now + sim.rng.choice((0, 0, 5, 20, 100, 400))
        op.checkpoint("handler running")
        r = sim.rng.random()
        if r < sim.rates.handler_retry and msg.deliveries < 4:
            # self.retry(): the same task id again after a countdown; no outcome yet.
            sim.model.ended(self.run, completed=False)
            self.run = None
            sim.broker.retry(msg, sim.rng.randint(10, 1500))
            self._ack(msg)
            return
        failure = None
        if r < sim.rates.handler_retry + sim.rates.handler_fail:
            failure = Failure(reason="handler_failed", detail="sim", exception="SimError: x")
        run, self.run = self.run, None
        sim.model.ended(run, completed=True, failed=failure is not None)
        self._finish(msg, failure, run)

    def _finish(self, msg: Message, failure: Failure | None, run: Run | None = None) -> None:
        """on_success / on_failure: record the outcome, ack, publish the next turn."""
        sid, member, key, _late, _gap, meta, body = msg.args
        d = self.dispatcher
        began = self.sim.sched.now
        try:
            turn = d.handler_done(sid, member, key, msg.name, msg.task_id, failure,
                                  body=str(body).encode(), meta=dict(meta or {}))
        except redis.RedisError as exc:
            self._gave_up("finish", began, exc)
            # Redis away for longer than REDIS_RETRY_S: logged by Celery, acked all
            # the same (the handler's deadline dead-letters it if nobody finishes it).
            self.sim.faults["handler_done_gave_up"] += 1
            self.sim.model.gave_up.add((sid, member if sid else notice_of(key), msg.name))
            if run is not None:
                run.unreported = True
                self.sim.model.note(f"{self!r} gave up reporting {run.key} task={run.task}")
            turn = None
        self._ack(msg)
        if turn is not None:
            d.dispatch(sid, turn)

    def _gave_up(self, what: str, began: int, exc: Exception) -> None:
        """``retry``: a handler's start or finish gives up on Redis only after trying
        for ``REDIS_RETRY_S`` (finding 3 of issue 9: a finish tried once)."""
        waited = self.sim.sched.now - began
        if waited < self.sim.settings.redis_retry_s * 1000:
            self.sim.model.violate("retry", f"{self!r}: the handler's {what} gave up after "
                                   f"{waited} ms on {type(exc).__name__}: {exc} (REDIS_RETRY_S="
                                   f"{self.sim.settings.redis_retry_s})")

    def _ack(self, msg: Message) -> None:
        self.sim.sched.checkpoint("ack")
        self.sim.broker.ack(msg)
        self.msg = None


@dataclass
class Result:
    seed: int
    steps: int
    faults: Counter[str]
    violations: list[str]
    tally: dict[str, int]
    seconds: float
    trace: list[str]
    virtual_ms: int
    settled: bool
    known: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"seed={self.seed} steps={self.steps} violations={len(self.violations)} "
                f"virtual={self.virtual_ms / 1000:.1f}s real={self.seconds:.1f}s "
                f"settled={self.settled} outcomes={dict(sorted(self.tally.items()))}"
                + (f" known_gaps={dict(sorted(self.known.items()))}" if self.known else ""))


class Simulation:
    def __init__(self, url: str, seed: int, *, intakes: int = 3, executors: int = 4,
                 sids: int = 3, rates: Rates | None = None, check_every: int = 1,
                 strict: bool = False) -> None:
        self.url = url
        self.seed = seed
        self.rng = random.Random(seed)
        self.rates = rates or Rates()
        self.check_every = check_every
        self.sched = Scheduler()
        self.sched.now = T0
        self.faults: Counter[str] = Counter()
        self.op_errors: Counter[str] = Counter()
        self.faulting = True
        base = sim_settings(url)
        # See the module docstring: Redis measures XAUTOCLAIM idle time on its real clock.
        self.settings = dataclasses.replace(base, claim_idle_ms=0)
        self.claim_idle_ms = base.claim_idle_ms
        self.clock = VirtualClock(self.sched, self._clock_fault)
        self.admin = redis.Redis.from_url(url)
        self.broker = Broker(
            rng=self.rng, now=lambda: self.sched.now, checkpoint=self.sched.checkpoint,
            visibility_ms=base.handler_visibility_timeout_s * 1000,
            faults=self._broker_fault, count=self._count, note=lambda s: self.model.note(s))
        self.sids = [f"sid{seed % 1000:03d}{chr(97 + i)}" for i in range(sids)]
        self.traffic = Traffic(self.rng, self.sids, base.dedupe_ttl_s * 1000, self._count)
        self.model = Model(deadline_ms=base.handler_deadline_s * 1000,
                           lost_ok=self.rates.lost_ok, strict=strict,
                           hold_ms=base.reorder_hold_ms, handlers_for=_handlers_for(base),
                           folds=base.builtin_handlers)
        self.stored_n = 0
        self.snapshot: tuple[int, list[tuple[bytes, int, bytes]]] | None = None
        self.admin.flushall()
        self.admin.script_flush()
        self.admin.xgroup_create(keys.INBOX, keys.INBOX_GROUP, id="0", mkstream=True)
        self.intakes = [IntakeWorker(self, i) for i in range(intakes)]
        self.executors = [Executor(self, i) for i in range(executors)]
        self.step_no = 0
        self.backlog_max = 0
        self.take_snapshot()

    # -- helpers ------------------------------------------------------------------
    def _clock_fault(self, fault: str, what: str) -> None:
        self.faults["redis_" + ("after" if fault == "after" else "before")] += 1
        raise_fault(fault, what)

    def _count(self, kind: str) -> None:
        self.faults[kind] += 1

    def _broker_fault(self, kind: str) -> bool:
        if not self.faulting:
            return False
        if self.rng.random() < getattr(self.rates, kind):
            self.faults[kind] += 1
            return True
        return False

    def actors(self) -> list[Any]:
        return [*self.intakes, *self.executors]

    def paused_ops(self) -> list[Op]:
        return [a.op for a in self.actors() if a.op is not None and not a.op.done]

    def _reap(self) -> None:
        for a in self.actors():
            op = a.op
            if op is not None and op.done:
                if op.error is not None:
                    self.faults["op_errors"] += 1
                    self.op_errors[type(op.error).__name__] += 1
                    if not isinstance(op.error, (redis.RedisError, PublishError)):
                        # ``crash``: only Redis and the broker may fail an operation; any
                        # other error aborts a whole batch or sweep (finding 2 of
                        # issue 9: a gap's end Python could not parse).
                        self.model.violate("crash", f"{a!r} {op.kind} raised "
                                           f"{type(op.error).__name__}: {op.error}")
                a.op = None
                if isinstance(a, Executor):
                    a.msg = None  # an unacked message is redelivered after the timeout
                if isinstance(a, Executor) and a.run is not None and a.run.active:
                    # The op raised between start and done (e.g. Redis gone for longer
                    # than REDIS_RETRY_S while reporting): the run is over.
                    self.model.ended(a.run, completed=False)
                    a.run = None

    def store(self, sent: Sent) -> None:
        self.stored_n += 1
        entry_id = inbox.store(self.admin, sent.body, meta_for(self.sched.now, self.stored_n))
        self.model.stored(entry_id, sent)

    def take_snapshot(self) -> None:
        """Every key, as DUMP + PTTL: what a restart with appendfsync everysec keeps."""
        names = list(self.admin.scan_iter(count=1000))
        pipe = self.admin.pipeline(transaction=False)
        for k in names:
            pipe.dump(k)
            pipe.pttl(k)
        replies = pipe.execute()
        self.model.note("snapshot")
        self.snapshot = (self.step_no, [(k, int(replies[2 * i + 1]), replies[2 * i])
                                        for i, k in enumerate(names)])

    def rollback(self) -> None:
        """Redis restarts from the snapshot: FLUSHALL, RESTORE every key, SCRIPT FLUSH;
        every connection is dropped (each paused operation's next round trip fails)."""
        assert self.snapshot is not None
        step, dumped = self.snapshot
        pipe = self.admin.pipeline(transaction=False)
        pipe.flushall()
        for k, ttl, payload in dumped:
            if payload is not None:
                pipe.restore(k, max(ttl, 0) if ttl != -1 else 0, payload, replace=True)
        pipe.script_flush()
        pipe.execute()
        for op in self.paused_ops():
            op.fail_next = "before"
        self.model.rollback(step)
        self.faults["redis_rollback"] += 1

    # -- one step -------------------------------------------------------------------
    def runnable(self) -> list[Op]:
        now = self.sched.now
        return [op for op in self.paused_ops() if op.wake_at <= now]

    def resume(self, op: Op) -> None:
        fault = None
        where = op.where
        if self.faulting and op.where not in ("begin", "sleep", "handler running", "ack"):
            r = self.rng.random()
            rates = self.rates
            if op.where == "publish":
                fault = "before" if r < rates.publish_error else None
            elif r < rates.error_before:
                fault = "before"
            elif r < rates.error_before + rates.error_after:
                fault = "after"
            elif r < rates.error_before + rates.error_after + rates.error_partial:
                fault = "partial"
        self.sched.resume(op, fault)
        if fault is not None:
            self.model.note(f"{op.actor} {op.kind}: fault {fault} at {where[:60]}")
        if op.done:
            end = "killed" if op.killed else repr(op.error)[:120] if op.error else "ok"
            self.model.note(f"{op.actor} {op.kind} ended: {end}")
        self._reap()

    def idle_intakes(self) -> list[IntakeWorker]:
        now = self.sched.now
        return [w for w in self.intakes if w.op is None and w.down_until <= now]

    def idle_executors(self) -> list[Executor]:
        now = self.sched.now
        return [e for e in self.executors if e.op is None and e.down_until <= now]

    def start_intake_op(self, w: IntakeWorker) -> None:
        now = self.sched.now
        choices = ["read", "read"]
        if now >= w.next_sweep:
            choices.append("sweep")
        if now >= w.next_claim:
            choices.append("claim")
        w.start(self.rng.choice(choices))
        self.resume(w.op)  # type: ignore[arg-type]

    def deliver(self, e: Executor) -> bool:
        msg = self.broker.deliver(reorder=self.faulting and self.rng.random() < 0.3)
        if msg is None:
            return False
        e.start(msg)
        self.resume(e.op)  # type: ignore[arg-type]
        return True

    def send_traffic(self) -> None:
        for sent in self.traffic.next_bodies(self.sched.now):
            self.store(sent)

    def advance(self, ms: int) -> None:
        self.sched.now += ms
        for sent in self.traffic.due(self.sched.now):
            self.store(sent)

    def fault_step(self) -> bool:
        """Maybe inject one process/server fault; True if one was."""
        rng, rates = self.rng, self.rates
        r = rng.random()
        acc = 0.0
        acc += rates.kill_intake
        if r < acc:
            w = rng.choice(self.intakes)
            self.faults["kill_intake" + ("_mid_op" if w.op else "_idle")] += 1
            w.die()
            return True
        acc += rates.kill_executor
        if r < acc:
            e = rng.choice(self.executors)
            self.faults["kill_executor" + ("_mid_task" if e.op else "_idle")] += 1
            e.die()
            return True
        acc += rates.stall
        if r < acc:
            ops = self.paused_ops()
            if ops:
                op = rng.choice(ops)
                s = self.settings
                limits = [("lease", s.dispatch_lease_ms), ("claim", 500),
                          ("hold", s.reorder_hold_ms)]
                if rates.long_stalls:
                    limits += [("visibility", s.handler_visibility_timeout_s * 1000),
                               ("deadline", s.handler_deadline_s * 1000)]
                limit, past = rng.choice(limits)
                op.wake_at = max(op.wake_at, self.sched.now + past + rng.randint(1, 1000))
                self.model.note(f"{op.actor} {op.kind} STALLS at {op.where[:50]} until "
                                f"t+{op.wake_at - T0}")
                self.faults[f"stall_past_{limit}"] += 1
                return True
            return False
        acc += rates.script_flush
        if r < acc:
            self.admin.script_flush()
            self.model.note("SCRIPT FLUSH")
            self.faults["script_flush"] += 1
            return True
        acc += rates.rollback
        if r < acc:
            self.rollback()
            return True
        return False

    def step(self) -> None:
        self.step_no += 1
        self.model.step = self.step_no
        self.model.now = self.sched.now
        rng = self.rng
        if self.faulting and self.fault_step():
            return
        r = rng.random()
        runnable = self.runnable()
        if r < 0.45 and runnable:
            self.resume(rng.choice(runnable))
        elif r < 0.60 and self.idle_intakes():
            self.start_intake_op(rng.choice(self.idle_intakes()))
        elif r < 0.80 and self.idle_executors() and self.broker.deliverable():
            self.deliver(rng.choice(self.idle_executors()))
        elif r < 0.80 + self.rates.traffic and self.faulting:
            self.send_traffic()
        else:
            x = rng.random()
            if x < 0.85:
                self.advance(rng.randint(1, 60))
            elif x < 1 - self.rates.global_pause:
                self.advance(rng.randint(100, self.rates.jump_ms))
            else:
                # Everything pauses at once (a VM freeze), past some lease or deadline.
                ms = rng.randint(2000, 14000)
                self.model.note(f"time jump of {ms} ms")
                self.faults["global_pause"] += 1
                self.advance(ms)
        self.broker.redeliver_expired()
        self.backlog_max = max(self.backlog_max, len(self.broker.deliverable()))
        if self.faulting and self.step_no % 40 == 0:
            self.take_snapshot()

    def all_sids(self) -> list[str]:
        """The recordings of the run, and those of events without ordering when the
        workers handle each as a recording of its own (``keys.unordered_sid``)."""
        return [*self.sids, *(s for s in self.model.seen_sids if s not in self.sids)]

    def check(self) -> None:
        self.model.now = self.sched.now
        self.model.check_step(self.admin, self.all_sids())

    # -- settling -----------------------------------------------------------------------
    def quiet(self) -> bool:
        if self.paused_ops() or not self.broker.idle() or self.traffic.delayed:
            return False
        if self.admin.zcard(keys.TIMERS) or self.admin.xlen(keys.INBOX):
            return False
        pending = self.admin.xpending(keys.INBOX, keys.INBOX_GROUP)
        return not pending.get("pending")

    def next_due(self) -> int:
        """When something is next due (at most a second ahead): an operation's wake-up,
        a broker message, a recording's timer, a reordered body."""
        now = self.sched.now
        times = [op.wake_at for op in self.paused_ops()]
        times += [t for t in (self.broker.next_due(),) if t is not None]
        times += [int(score) for _, score in self.admin.zrange(keys.TIMERS, 0, 0,
                                                                withscores=True)]
        times += [s.send_at for s in self.traffic.delayed]
        times += [w.next_sweep for w in self.intakes] + [w.next_claim for w in self.intakes]
        later = [t for t in times if t > now]
        return min([now + 1000, *later])

    def settle(self, max_steps: int = 200_000) -> bool:
        """Faults and new traffic stop; the workers run until nothing is left to do."""
        self.faulting = False
        for sent in self.traffic.due(self.sched.now, everything=True):
            self.store(sent)
        for a in self.actors():
            a.down_until = 0
        for n in range(max_steps):
            self.step_no += 1
            self.model.step = self.step_no
            self.model.now = self.sched.now
            progressed = False
            runnable = self.runnable()
            if runnable:
                self.resume(runnable[0])
                progressed = True
            else:
                for w in self.idle_intakes():
                    now = self.sched.now
                    kind = ("sweep" if now >= w.next_sweep else
                            "claim" if now >= w.next_claim else
                            "read" if self.admin.xlen(keys.INBOX) else "")
                    if kind:
                        w.start(kind)
                        self.resume(w.op)  # type: ignore[arg-type]
                        progressed = True
                        break
                for e in self.idle_executors():
                    if self.deliver(e):
                        progressed = True
                        break
            if (n % 50 == 0 or not progressed) and self.quiet():
                return True
            if not progressed:
                self.advance(max(1, self.next_due() - self.sched.now))
            elif n % 7 == 0:
                self.advance(self.rng.randint(1, 100))
            self.broker.redeliver_expired()
            if self.check_every and n % self.check_every == 0:
                self.check()
        return False

    def shutdown(self) -> None:
        for a in self.actors():
            if a.op is not None and not a.op.done:
                self.sched.kill(a.op)
            a.op = None
            a.client.close()
        self.admin.close()

    def run(self, steps: int, stop_at: str | None = None) -> Result:
        """``steps`` random steps with faults, then settle and check. ``stop_at``: a
        violation kind that ends the run at once, unsettled (a mutant found: ``sim.mutants``)."""
        stop = False

        def drive() -> None:
            nonlocal stop
            for _ in range(steps):
                self.step()
                if self.check_every and self.step_no % self.check_every == 0:
                    self.check()
                if stop_at is not None and stop_at in violation_kinds(self.model.violations):
                    stop = True
                    break
                if len(self.model.violations) > 20:
                    break

        return self.play(drive, steps, stopped=lambda: stop)

    def play(self, drive: Callable[[], None], steps: int = 0,
             stopped: Callable[[], bool] = lambda: False) -> Result:
        """Run ``drive`` (random steps, or a scripted scenario: ``scenarios.py``), then
        settle and check the settled promises (unless ``stopped()`` after ``drive``)."""
        started = time.monotonic()
        settled = False
        tally: dict[str, int] = {}
        try:
            with registered_handlers(), quiet_logs(), pruning_once():
                drive()
                if stopped():
                    return Result(self.seed, steps, self.faults, self.model.violations, tally,
                                  time.monotonic() - started, self.model.trace,
                                  self.sched.now - T0, settled, dict(self.model.known))
                settled = self.settle()
                if not settled:
                    self.model.violate("settled", "the run did not settle (liveness)")
                if self.broker.max_wait_ms >= self.settings.handler_deadline_s * 500:
                    self.model.lost_ok = True  # see Rates.gentle
                    self.model.note(f"queue overloaded: a message waited "
                                    f"{self.broker.max_wait_ms} ms")
                tally = self.model.check_settled(
                    self.admin, self.all_sids(), self.broker.idle(),
                    counters_exact=self.model.rollbacks == 0)
            if self.broker.max_wait_ms >= self.settings.handler_deadline_s * 500:
                tally["queue_overloaded"] = 1
        finally:
            self.shutdown()
        return Result(self.seed, steps, self.faults, self.model.violations, tally,
                      time.monotonic() - started, self.model.trace, self.sched.now - T0, settled,
                      dict(self.model.known))
