"""The built-in handler: every event folded into its recording's stored record.

``recording_state`` is registered for every event (``@on_event("*")``) and loaded
in every worker (``agora_callbacks.workers.app.BUILTIN_HANDLERS``). It loads the record of the
event's ``sid``, folds the event in (``agora_callbacks.workers.builtin.fold.fold``, pure) and
stores the result under ``keys.recording_state(sid)`` for
``RECORDING_STATE_TTL_S`` (``agora_callbacks.workers.builtin.store``). The workers run one
recording's handlers one at a time in ``sequence`` order, so load -> fold -> save
needs no lock; a re-run on an event already applied changes nothing.

Read the record with ``agora-callbacks recording SID`` or ``GET /recordings/<sid>``.
"""

from __future__ import annotations

from typing import Any

import redis

from agora_callbacks.logs import get_logger
from agora_callbacks.workers import on_event, runtime
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import apply, fold
from agora_callbacks.workers.builtin.record import as_str, field, new_record

__all__ = ["HANDLER_NAME", "fold", "recording_state"]

#: Task name of the built-in handler (stable: it appears in Flower and dead letters).
HANDLER_NAME = "agora_callbacks.recording_state"


log = get_logger("agora_callbacks.workers.builtin.recording_state")


def _retry_backoff_max_s() -> int:
    """30 s, or less with a short ``HANDLER_VISIBILITY_TIMEOUT_S``: a retry's countdown
    must stay below it (``workers.registry`` refuses a handler whose can reach it)."""
    return max(1, min(30, runtime.get().settings.handler_visibility_timeout_s // 2))


# A Redis hiccup is retried (the turn stays open meanwhile), so the record does not
# miss an event; after the last retry the run is dead-lettered like any handler's.
@on_event("*", name=HANDLER_NAME, autoretry_for=(redis.RedisError, OSError),
          retry_backoff=1, retry_backoff_max=_retry_backoff_max_s(), retry_jitter=True,
          max_retries=8)
def recording_state(event: Any, key: str, late: bool, gap: tuple[int, int] | None) -> None:
    """Fold ``event`` into its recording's stored record (events without a sid: skipped)."""
    sid = as_str(field(event, "sid"))
    if not sid:
        return
    rt = runtime.get()
    record = store.load(rt.client, sid) or new_record(sid)
    if not apply(record, event, late=late, gap=gap, key=key):
        log.info("recording state unchanged: event already applied")
        return
    store.save(rt.client, sid, record, rt.settings.record_ttl_s)
    log.info("recording state updated", phase=record["status"]["phase"],
             event_count=record["event_count"], late=late, gap=gap)
