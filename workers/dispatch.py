"""Publishing handler tasks for a recording's turn, and what follows from it.

``Dispatcher.settle`` turns what ``take`` decided into actions: publish the
handler tasks of an ``event`` turn with its ``commit`` (the messages are pushed by
the commit script, only if the turn is still that take's: see
``workers.outbox``), dead-letter the handlers of a ``lost`` turn and move on (one
script, ``lost.lua``, again only if the turn is still that take's), and keep the
recording's timer (``keys.TIMERS``)
no later than its next due time. Timers are only ever moved earlier here
(``ZADD LT``), except by the commit of a turn taken under a lease that has not
run out (``timer_commit.lua``: the turn is then ours and only its handler
deadline is due); otherwise the sweep (``workers.timers``) is the only one to
move them later.
"""

from __future__ import annotations

import time
import traceback
from collections import Counter
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog

from agora_callbacks import deadletters, keys, metrics
from agora_callbacks.logs import get_logger
from workers import scripts
from workers.ordering import Ordering, Push, Record, Turn, parse_finish
from workers.outbox import Outbox, publishing
from workers.registry import REGISTRY
from workers.runtime import Runtime
from workers.scripts import Call, Pipe

log = get_logger("workers.dispatch")


def now_ms() -> int:
    return int(time.time() * 1000)


def sequence_of(member: str) -> int | None:
    head = member.partition("|")[0]
    return int(head) if head.lstrip("-").isdigit() else None


def q_timer(pipe: Pipe, sid: str, due_ms: int) -> object:
    """Queue: look at ``sid`` again no later than ``due_ms``."""
    return pipe.zadd(keys.TIMERS, {sid: due_ms}, lt=True)


def q_timer_commit(pipe: Pipe, sid: str, lease_ms: int, deadline_ms: int,
                   now_ms: int = 0) -> object:
    """Queue, right after the commit of a turn taken under the lease ``lease_ms``:
    the recording's timer at the handler deadline if that lease had not run out
    (``timer_commit.lua``), else no later than the lease."""
    return scripts.evalsha(pipe, "timer_commit", [keys.TIMERS],
                           [sid, lease_ms, deadline_ms, now_ms])


def q_counters(pipe: Pipe, counts: Counter[str]) -> None:
    for name, n in counts.items():
        if n:
            pipe.hincrby(keys.COUNTERS, name, n)


def task_args(sid: str, member: str, record: Record, late: bool,
              gap: tuple[int, int] | None) -> list[Any]:
    """Arguments of a handler task (see ``workers.task.HandlerTask.run_handler``)."""
    return [sid, member, record.key, late, list(gap) if gap else None, record.meta,
            record.body.decode("utf-8", "replace")]


def publish(names: Sequence[str], args: list[Any], producer: Any = None) -> None:
    """Publish one Celery task per handler name."""
    from workers.app import celery_app

    # The task's args as Flower and the logs show them: the recording, the event's
    # place and key, not the raw body (and Celery need not repr the body: that
    # was a third of the cost of a publish).
    shown = f"(sid={args[0]!r}, member={args[1]!r}, key={args[2]!r}, late={args[3]}, " \
            f"gap={args[4]})"
    for name in names:
        handler = REGISTRY.get(name)
        if handler is not None:
            handler.task.apply_async(args=args, producer=producer, argsrepr=shown,
                                     kwargsrepr="{}")
        else:
            log.warning("handler not registered here, sent by name", handler=name)
            celery_app.send_task(name, args=args, producer=producer, argsrepr=shown,
                                 kwargsrepr="{}")


class Commit:
    """The call that commits an ``event`` turn and sends its publishes (``pushes``),
    with what was counted for it (taken back if the commit is refused)."""

    __slots__ = ("counted", "ordering", "pushes", "sid", "turn")

    def __init__(self, ordering: Ordering, sid: str, turn: Turn, pushes: tuple[Push, ...],
                 counted: Counter[str]) -> None:
        self.ordering, self.sid, self.turn = ordering, sid, turn
        self.pushes, self.counted = pushes, counted

    def __call__(self, pipe: Pipe) -> object:
        return self.ordering.q_commit(pipe, self.sid, self.turn.member, self.turn.token,
                                      self.pushes)


class Dispatcher:
    """Acts on ``take`` results for one process."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def settle(self, sid: str, turn: Turn | None, counts: Counter[str],
               producer: Any = None, outbox: Outbox | None = None) -> list[Call]:
        """Act on ``turn``; return the Redis calls that complete it (commit, timer),
        to be run in the caller's next pipeline. The publishes of an ``event``
        turn collected in ``outbox`` are taken out of it and handed to the turn's
        commit, which sends them only if the turn is still this take's."""
        calls: list[Call] = []
        while turn is not None:
            if turn.skipped:
                counts["no_handler"] += turn.skipped
            if turn.kind == "event":
                mark = outbox.mark() if outbox is not None else 0
                counted: Counter[str] = Counter()
                self._publish(sid, turn, counted, producer)
                counts.update(counted)
                pushes = outbox.pushes_since(mark) if outbox is not None else []
                calls.append(Commit(self.rt.ordering, sid, turn, tuple(pushes), counted))
                calls.append(partial(q_timer_commit, sid=sid, lease_ms=turn.due_ms,
                                     deadline_ms=self.rt.ordering.deadline_ms))
                return calls
            if turn.kind == "lost":
                turn = self._lost(sid, turn, counts)
                continue
            if turn.due_ms:
                calls.append(partial(q_timer, sid=sid, due_ms=turn.due_ms))
            return calls
        return calls

    def after_commits(self, calls: Sequence[Call], results: Sequence[Any]) -> None:
        """After the transaction that ran ``calls`` (``results`` in the same order):
        a commit that was refused (the turn had been taken again meanwhile, by a
        worker that publishes it itself) pushed nothing; take back what was
        counted for it. One more round trip, only then."""
        undo: Counter[str] = Counter()
        for call, result in zip(calls, results, strict=True):
            if not isinstance(call, Commit) or (
                    not isinstance(result, Exception) and int(result or 0) > 0):
                continue
            undo.subtract(call.counted)
            turn = call.turn
            if isinstance(result, Exception):
                log.error("commit failed, nothing published; the timer sweep will",
                          sid=call.sid, sequence=sequence_of(turn.member), error=str(result))
            else:
                log.warning("publish dropped: the turn was taken again meanwhile",
                            sid=call.sid, sequence=sequence_of(turn.member), token=turn.token)
        if undo:
            scripts.run(self.rt.client, [lambda p: q_counters(p, undo)])

    def _publish(self, sid: str, turn: Turn, counts: Counter[str], producer: Any) -> None:
        assert turn.record is not None
        seq = sequence_of(turn.member)
        publish(turn.handlers, task_args(sid, turn.member, turn.record, turn.late, turn.gap),
                producer)
        # Explicit fields: the context bound at hand is the finishing handler's event's.
        notice = turn.record.notice_id or None
        counts["dispatched"] += 1
        if turn.late:
            counts["late"] += 1
            log.info("late event dispatched", sid=sid, sequence=seq, notice_id=notice,
                     handlers=turn.handlers)
        if turn.gap:
            counts["gaps"] += turn.gap[1] - turn.gap[0] + 1
            log.info("gap skipped", sid=sid, sequence=seq, notice_id=notice, gap=list(turn.gap))
        log.info("dispatched", sid=sid, sequence=seq, notice_id=notice, key=turn.record.key,
                 handlers=turn.handlers, late=turn.late, gap=list(turn.gap) if turn.gap else None)

    def _lost(self, sid: str, turn: Turn, counts: Counter[str]) -> Turn | None:
        """Dead-letter the handlers that never reported and end their turn, in one
        step (``lost.lua``), only if the turn is still this take's; return the
        recording's next turn (None when another take of the turn settles it)."""
        assert turn.record is not None
        rec = turn.record
        settings = self.rt.settings
        fields = deadletters.entry_fields(
            kind=deadletters.HANDLER, reason="lost",
            detail=f"no report from the handler within HANDLER_DEADLINE_S="
                   f"{settings.handler_deadline_s}",
            body=rec.body, meta=rec.meta, key=rec.key,
            extra={"sid": sid, "member": turn.member})
        lost = self.rt.ordering.lost(self.rt.client, sid, turn.member, turn.token,
                                     settings.deadletter_maxlen, fields)
        seq = sequence_of(turn.member)
        if lost.status != "next":
            log.warning("lost handlers left to the take that has the turn now", sid=sid,
                        sequence=seq, token=turn.token)
            return None
        if lost.handlers:
            metrics.DEADLETTERED.labels(deadletters.HANDLER, "lost").inc(len(lost.handlers))
            log.warning("handlers lost, dead-lettered", sid=sid, sequence=seq,
                        handlers=lost.handlers)
        return lost.turn

    # -- after a handler ------------------------------------------------------------
    def handler_done(self, sid: str, member: str, name: str) -> None:
        """A handler of ``member`` finished (or was dead-lettered): end its part of the
        turn and dispatch the recording's next event if the turn is over."""
        turn = self.finish_handler(sid, member, name)
        if turn is not None:
            self.dispatch_next(sid, turn)

    def finish_handler(self, sid: str, member: str, name: str) -> Turn | None:
        """End the handler's part of the turn (one round trip); return the recording's
        next turn when this one is over (to be settled with ``dispatch_next``), else
        None. Once it returns, the handler's outcome is in Redis: if nobody settles
        the returned turn (this process dies), the timer sweep takes it again after
        ``DISPATCH_LEASE_MS``."""
        ordering = self.rt.ordering
        # The timer is armed first: if this process dies between finish (which may
        # take the next event) and publishing it, the sweep re-takes it.
        first = scripts.run(self.rt.client, [
            lambda p: q_timer(p, sid, now_ms() + self.rt.settings.dispatch_lease_ms),
            lambda p: ordering.q_finish(p, sid, member, [name]),
        ])
        if isinstance(first[1], Exception):
            raise first[1]
        finished = parse_finish(first[1])
        return finished.turn if finished.status == "next" else None

    def dispatch_next(self, sid: str, turn: Turn | None) -> None:
        """Settle the turn ``finish_handler`` returned: publish its handler tasks
        with the turn's commit, in one transaction (one round trip)."""
        counts: Counter[str] = Counter()
        with publishing() as (producer, outbox):
            calls = self.settle(sid, turn, counts, producer, outbox)
        calls.append(lambda p: q_counters(p, counts))
        # The publishes go with the commit of the turn (commit.lua): together, and
        # only if the turn is still this take's.
        sent = [*outbox.calls(), *calls]
        self.after_commits(sent, scripts.run(self.rt.client, sent, atomic=True))


def dead_letter_handler(rt: Runtime, *, name: str, exc: BaseException, einfo: Any,
                        args: Sequence[Any], retries: int,
                        reason: str = "handler_failed") -> None:
    """Write the dead letter of a handler that failed for good (``reason``
    ``handler_failed``) or rejected its event (``rejected``)."""
    sid, member, key, late, gap, meta, body = args
    tb = str(getattr(einfo, "traceback", "") or "".join(traceback.format_exception(exc)))
    pipe = rt.client.pipeline(transaction=False)
    deadletters.add(
        pipe, rt.settings.deadletter_maxlen, kind=deadletters.HANDLER, reason=reason,
        detail=tb[-8000:], body=str(body).encode(), meta=dict(meta or {}), key=str(key),
        handler=name, exception=f"{type(exc).__name__}: {exc}",
        extra={"sid": sid, "member": member, "late": late, "gap": gap, "retries": retries},
    )
    pipe.hincrby(keys.COUNTERS, "deadletters_handler", 1)
    pipe.execute()
    structlog.get_logger("workers.task").warning(
        "handler rejected the event, dead-lettered" if reason == "rejected"
        else "handler failed, dead-lettered", handler=name, exception=type(exc).__name__,
        retries=retries)
