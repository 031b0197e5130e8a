"""A recording's timeline for the dashboard: each event and each handler run on it.

One sorted set per recording (``keys.recording_timeline(sid)``), scored by the
event's ``sequence``, whose members are small JSON objects:

- ``{"k": "e", ...}``: the event (type, noticeId, ``sendts``, the time the ingress
  received it, its dedupe key, the late flag and the gap skipped just before it).
  Deterministic (``event_member``), so a fold written again adds nothing;
- ``{"k": "h", ...}``: one handler run that ended (outcome: ``done``, the reason of
  its dead letter, or ``lost``; duration, when, the exception of a failure, the
  detail of a ``lost`` one; ``redriven`` for a re-run from its dead letter).

Written where the facts are decided, in the same atomic step, with no command of
its own:

- the event member by the record's compare-and-set (``workers.builtin.store.save_if``,
  ``save_record.lua``) when the turn-path fold writes the record: every event
  folded is on the timeline from the moment its turn is taken, whether or not a
  user handler is registered for it (none with ``BUILTIN_HANDLERS=false``: no fold);
- a handler run by ``finish.lua`` (the ordering script that records the handler's
  outcome and its dead letter; the task passes the duration it measured), and a
  handler dead-lettered as ``lost`` by the deadline sweep (``take``, in
  ``_lib.lua``). A dead-lettered run also sets the recordings list's
  ``deadletters`` flag (``recordings_index``). Each run is written once: with the
  outcome that only one call can record.

``handler_finished`` (one script call) remains for what has no such step: a
handler re-run from its dead letter (``agora-callbacks dlq redrive``, outside the
order), and tools and tests. The timeline keeps the last ``MAX_ENTRIES`` members
(highest sequences) and expires ``RECORD_TTL_S`` after its last write, like the
record. Recordings of an event without ``sid``/``sequence`` (``notice:...``) have none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from agora_callbacks import keys, recordings_index

MAX_ENTRIES = 2000

# ``handler_finished``'s one command. KEYS: the timeline, the list's "dead letters" flag set.
# ARGV: ttl_s, MAX_ENTRIES, sequence, dead-lettered (1/0), sid, now_ms, members...
_WRITE = """
for i = 7, #ARGV do redis.call('ZADD', KEYS[1], ARGV[3], ARGV[i]) end
if redis.call('ZCARD', KEYS[1]) > tonumber(ARGV[2]) then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[6], ARGV[5]) end
return 1
"""


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


#: A timeline member as written: (score = the sequence, JSON).
Member = tuple[int, str]


def event_entry(event: Any, *, key: str, late: bool, gap: Any,
                meta: Mapping[str, Any]) -> dict[str, Any]:
    """The event's member (everything in it comes from the event and its arrival)."""
    received = meta.get("received_ms")
    return {"k": "e", "seq": event.sequence, "type": int(event.event_type),
            "notice": event.notice_id, "sendts": event.sendts,
            "received_ms": received if isinstance(received, int) else None,
            "key": key, "late": bool(late),
            "gap": list(gap) if isinstance(gap, list | tuple) and len(gap) == 2 else None}


def event_member(event: Any, *, key: str, late: bool, gap: Any,
                 meta: Mapping[str, Any]) -> Member | None:
    """The event's member as ``store.save_if`` writes it (None: an event with no
    place on a timeline, without ``sid`` or ``sequence``)."""
    if not getattr(event, "sid", None) or getattr(event, "sequence", None) is None:
        return None
    entry = event_entry(event, key=key, late=late, gap=gap, meta=meta)
    return int(event.sequence), _dumps(entry)


def handler_finished(client: redis.Redis, ttl_s: int, *, sid: str, key: str, late: bool,
                     gap: Any, meta: Mapping[str, Any], body: str, handler: str,
                     outcome: str, duration_ms: float | None, exception: str = "",
                     now_ms: int | None = None, event: Any = None) -> None:
    """Record one handler run that ended, and its event (``event``: the body parsed
    already, if it was), with a script call of its own. The workers call it only
    for a re-run from a dead letter (``sid`` empty: outside the order, filed under
    the event's own sid); a run in the order is written by ``finish.lua``. Events of
    no recording (``notice:...``) have no timeline."""
    from agora_callbacks.schemas import parse_event

    event = event if event is not None else parse_event(body.encode("utf-8"))
    redriven = not sid
    sid = sid or (event.sid or "")
    if not sid or keys.is_unordered_sid(sid) or event.sequence is None:
        return
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    entry = event_entry(event, key=key, late=late, gap=gap, meta=meta)
    run = {"k": "h", "seq": event.sequence, "handler": handler, "outcome": outcome,
           "ms": None if duration_ms is None else round(duration_ms, 2), "at_ms": now_ms,
           "exception": exception[:500], "redriven": redriven}
    # A re-run's arguments come from its dead letter: its event is recorded already.
    members = [_dumps(run)] if redriven else [_dumps(run), _dumps(entry)]
    client.register_script(_WRITE)(
        keys=[keys.recording_timeline(sid), recordings_index.flag_index("deadletters")],
        args=[ttl_s, MAX_ENTRIES, event.sequence, "0" if outcome == "done" else "1", sid,
              now_ms, *members])


@dataclass
class Step:
    """One sequence of the timeline: its event (if recorded) and its handler runs."""

    sequence: int
    event: dict[str, Any] | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)


def load(client: redis.Redis, sid: str) -> list[Step]:
    """The recorded timeline of ``sid``, by sequence (runs by end time)."""
    members: Any = client.zrange(
        keys.recording_timeline(sid), 0, -1, withscores=True)
    steps: dict[int, Step] = {}
    for raw, score in members:
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        step = steps.setdefault(int(score), Step(int(score)))
        if item.get("k") == "e":
            step.event = item
        else:
            step.runs.append(item)
    for step in steps.values():
        step.runs.sort(key=lambda r: (r.get("at_ms") or 0, str(r.get("handler"))))
    return [steps[s] for s in sorted(steps)]
