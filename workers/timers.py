"""The timer sweep: recordings whose hold window ended, whose publish lease ran
out, or whose handlers are past their deadline; and recordings whose lifecycle is
due without a new event (``keys.LIFECYCLE_TIMERS``).

``keys.TIMERS`` holds sid -> unix ms at which the recording must be looked at
again. Only the per-recording scripts write it, each in the same atomic step as
the state it derives from (``arm`` in ``_lib.lua``), so a timer always says when
its recording is next due. The sweep only reads: it runs ``take`` for each due
recording (which sets the timer again) and publishes what ``take`` returned.
Several workers sweeping at once is safe: ``take`` is atomic, and a turn's
handlers start once whatever is published.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from agora_callbacks import keys
from agora_callbacks.logs import get_logger
from agora_callbacks.workers.dispatch import Dispatcher
from agora_callbacks.workers.ordering import parse_turn, scripts

log = get_logger("workers.timers")


def sweep(dispatcher: Dispatcher, limit: int = 100) -> int:
    """Act on up to ``limit`` due recordings, and on up to ``limit`` recordings whose
    lifecycle is due (``workers.builtin.lifecycle.sweep``: stall, settle windows,
    hooks not published yet); return how many recordings were due (the former)."""
    rt = dispatcher.rt
    client = rt.client
    now = rt.clock.now_ms(client)
    if rt.settings.builtin_handlers:
        from agora_callbacks.workers.builtin import lifecycle

        lifecycle.sweep(client, rt.settings, now, limit)
    due: Any = client.zrangebyscore(keys.TIMERS, "-inf", now, start=0, num=limit)
    if not due:
        return 0
    sids = [m.decode() if isinstance(m, bytes) else str(m) for m in due]
    replies = scripts.run(client, [partial(rt.ordering.q_take, sid=sid) for sid in sids])
    for sid, reply in zip(sids, replies, strict=True):
        if isinstance(reply, Exception):
            # The timer is still due: the next sweep tries again.
            log.error("sweep could not look at a recording", sid=sid, error=str(reply))
            continue
        dispatcher.dispatch(sid, parse_turn(reply))
    return len(sids)
