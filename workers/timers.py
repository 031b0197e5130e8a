"""The timer sweep: recordings whose hold window ended or whose lease ran out.

``keys.TIMERS`` holds sid -> unix ms at which the recording must be looked at
again. Workers only move a timer earlier (``ZADD LT``); the sweep, run by every
worker's intake thread, runs ``take`` for each due recording and moves its timer
to the next due time, or removes it, unless someone moved it meanwhile
(``timer_set.lua``). Several workers sweeping at once is safe: ``take`` is atomic.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

from agora_callbacks import keys
from workers import scripts
from workers.dispatch import Dispatcher, q_counters
from workers.ordering import parse_turn
from workers.outbox import publishing
from workers.scripts import Call, Pipe


def q_timer_set(pipe: Pipe, sid: str, read_score: float, due_ms: int) -> object:
    return scripts.evalsha(pipe, "timer_set", [keys.TIMERS], [sid, int(read_score), due_ms])


def sweep(dispatcher: Dispatcher, limit: int = 100) -> int:
    """Act on up to ``limit`` due recordings; return how many were due."""
    rt = dispatcher.rt
    client = rt.client
    seconds, micros = client.time()
    now = int(seconds) * 1000 + int(micros) // 1000
    due: Any = client.zrangebyscore(keys.TIMERS, "-inf", now, start=0, num=limit,
                                    withscores=True)
    if not due:
        return 0
    sids = [(m.decode() if isinstance(m, bytes) else str(m), float(score)) for m, score in due]
    replies = scripts.run(client, [partial(rt.ordering.q_take, sid=sid) for sid, _ in sids])
    counts: Counter[str] = Counter()
    calls: list[Call] = []
    # Publishes are sent by the commits of their turns (only if still theirs),
    # with the timers, in one transaction.
    with publishing() as (producer, outbox):
        for (sid, score), reply in zip(sids, replies, strict=True):
            if isinstance(reply, Exception):
                continue
            turn = parse_turn(reply)
            calls.extend(dispatcher.settle(sid, turn, counts, producer, outbox))
            calls.append(partial(q_timer_set, sid=sid, read_score=score, due_ms=turn.due_ms))
    calls.append(lambda p: q_counters(p, counts))
    sent = [*outbox.calls(), *calls]
    dispatcher.after_commits(sent, scripts.run(client, sent, atomic=True))
    return len(sids)
