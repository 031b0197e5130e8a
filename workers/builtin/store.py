"""Read and write a recording's folded record in Redis.

One JSON string per recording under ``keys.recording_state(sid)``, rewritten
whole after each change with ``SET ... EX RECORD_TTL_S``: an idle recording's
record expires that long after its last change (guarantee 6).

Every writer in the workers goes through ``save_if`` (compare-and-set): the fold
in the turn path (``workers.builtin.lifecycle``), the lifecycle sweep and
``update_record`` (reconciliation) may each change the record, and none may
overwrite a change it did not read. ``save`` writes unconditionally (tools,
tests). Both write the dashboard's index of the record
(``agora_callbacks.recordings_index``) in the same atomic step; ``save_if`` also
writes the folded event's member of the dashboard's timeline
(``agora_callbacks.recording_timeline``) when given one (the turn-path fold).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis

from agora_callbacks import keys, recording_timeline, recordings_index
from agora_callbacks.workers.ordering import scripts

_LUA = Path(__file__).with_name("lua") / "save_record.lua"


def load(client: redis.Redis, sid: str) -> dict[str, Any] | None:
    """The stored state of ``sid``, or None if there is none (never seen, or expired)."""
    return decode(client.get(keys.recording_state(sid)))


def decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


class UnreadableRecord(ValueError):
    """The stored record of a recording is not a record: not JSON, or JSON of another
    shape (``shape_problem``). ``str(exc)`` says why, in a few words."""


#: Fields every record has had from the first release (``record.new_record``).
REQUIRED: dict[str, type] = {"sid": str, "status": dict}
#: Fields readers index into, when present and not null: objects...
OBJECTS = ("status", "times", "sequences", "upload", "transcoding", "streams", "exit",
           "web", "query", "event_types", "dropped")
#: ... lists of objects ...
LISTS_OF_OBJECTS = ("files", "snapshots", "errors", "warnings", "leaves", "failovers",
                    "interruptions")
#: ... and what their items and objects hold (field, inner field): its type.
INNER: dict[tuple[str, str], type] = {
    ("sequences", "gaps"): list, ("sequences", "missing"): list,
    ("errors", "module"): dict, ("errors", "error"): dict,
    ("warnings", "warning"): dict, ("leaves", "reasons"): list,
}
_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
               int: "a number", float: "a number", type(None): "null"}


def _kind(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shape_problem(value: Any) -> str | None:
    """Why ``value`` (a decoded record) is not of a record's shape, or None: not an
    object, a field of ``REQUIRED`` missing, or a field readers index into (``OBJECTS``,
    ``LISTS_OF_OBJECTS``, ``INNER``) of another JSON type. Not a full schema: what a
    reader needs so that ``.get`` on what it reads does not fail."""
    if not isinstance(value, dict):
        return f"JSON, but {_kind(value)}, not an object"
    for name, kind in REQUIRED.items():
        if name not in value:
            return f"no {name} field"
        if not isinstance(value[name], kind):
            return f"{name} is {_kind(value[name])}, not {_JSON_TYPES[kind]}"
    for name in OBJECTS:
        found = value.get(name)
        if found is not None and not isinstance(found, dict):
            return f"{name} is {_kind(found)}, not an object"
    for name in LISTS_OF_OBJECTS:
        found = value.get(name)
        if found is None:
            continue
        if not isinstance(found, list):
            return f"{name} is {_kind(found)}, not an array"
        for index, item in enumerate(found):
            if not isinstance(item, dict):
                return f"{name}[{index}] is {_kind(item)}, not an object"
    for (name, inner), kind in INNER.items():
        found = value.get(name)
        holders = found if isinstance(found, list) else [found] if found else []
        for index, holder in enumerate(holders):
            got = holder.get(inner)
            if got is not None and not isinstance(got, kind):
                where = f"{name}[{index}]" if isinstance(found, list) else name
                return f"{where}.{inner} is {_kind(got)}, not {_JSON_TYPES[kind]}"
    return None


def decode_checked(raw: Any) -> dict[str, Any] | None:
    """The record in ``raw`` (stored bytes; None: there is none), or
    ``UnreadableRecord`` saying why it is not one (``shape_problem``). For readers
    that show a record (the dashboard, the admin API): ``decode`` reads a value that
    is not an object as no record at all."""
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise UnreadableRecord("not JSON: not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        why = str(exc) if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise UnreadableRecord(f"not JSON: {why}") from None
    problem = shape_problem(value)
    if problem is not None:
        raise UnreadableRecord(problem)
    result: dict[str, Any] = value
    return result


def load_checked(client: redis.Redis, sid: str) -> dict[str, Any] | None:
    """``load``, raising ``UnreadableRecord`` for a stored value that is not a record."""
    return decode_checked(client.get(keys.recording_state(sid)))


def dumps(state: dict[str, Any]) -> str:
    """Canonical JSON of a state: sorted keys, no spaces, so equal states are equal bytes."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def save(client: redis.Redis, sid: str, state: dict[str, Any], ttl_s: int) -> None:
    """Write the state of ``sid`` and (re)start its expiry, with the dashboard's index
    of it, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.recording_state(sid), dumps(state), ex=ttl_s)
    recordings_index.queue_update(pipe, sid, state, ttl_s)
    pipe.execute()


@dataclass(frozen=True)
class Loaded:
    """A record as read, with what ``save_if`` needs to detect a change since."""

    record: dict[str, Any] | None
    tag: str  # sha1 of the stored bytes, "" when there was no record
    turn: str | None = None  # the recording's current turn (member), when asked
    now_ms: int | None = None  # Redis's clock when read, when asked


def read(client: redis.Redis, sid: str, *, with_turn: bool = False,
         with_time: bool = False) -> Loaded:
    """The record of ``sid`` and its tag, and if asked the current turn and Redis's
    time (one round trip)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.recording_state(sid))
    if with_turn:
        pipe.hget(keys.recording_order(sid), "cur")
    if with_time:
        pipe.time()
    replies = pipe.execute()
    turn = replies[1] if with_turn else None
    now_ms = None
    if with_time:
        seconds, micros = replies[-1]
        now_ms = int(seconds) * 1000 + int(micros) // 1000
    return loaded(replies[0], turn=turn.decode() if isinstance(turn, bytes) else turn,
                  now_ms=now_ms)


def loaded(raw: bytes | str | None, *, turn: str | None = None,
           now_ms: int | None = None) -> Loaded:
    """A record as read elsewhere (``raw``: the stored bytes, None or empty when
    there is none), e.g. in the reply of the ordering script that took a turn."""
    if not raw:
        return Loaded(None, "", turn, now_ms)
    data = raw if isinstance(raw, bytes) else raw.encode()
    return Loaded(decode(data), hashlib.sha1(data).hexdigest(), turn, now_ms)


@cache
def script_text() -> str:
    """The compare-and-set script: ``save_record.lua`` after the dashboard index's
    ``index_update`` function, which it runs on the keys after its own three."""
    return recordings_index.UPDATE_FUNCTION + _LUA.read_text()


def script_sha() -> str:
    """SHA1 of the compare-and-set script (as ``EVALSHA`` names it)."""
    return hashlib.sha1(script_text().encode()).hexdigest()


def _save_script(client: redis.Redis) -> Any:
    """The compare-and-set script (``scripts.registered``)."""
    return scripts.registered(client, script_text())


#: ``save_if``'s ``due_ms``: leave the lifecycle timer as it is.
KEEP_TIMER = -1


def save_if(client: redis.Redis, sid: str, state: dict[str, Any], ttl_s: int, tag: str, *,
            due_ms: int = KEEP_TIMER, turn: str = "",
            timeline: recording_timeline.Member | None = None) -> str:
    """Write the state of ``sid`` if the stored one still has ``tag`` (see ``read``),
    and set the recording's lifecycle timer to ``due_ms`` (0: none; ``KEEP_TIMER``)
    in the same step. ``turn``: also require that the recording's current turn is
    still this member. The dashboard's index of the record, and ``timeline`` (the
    folded event's member of the recording's timeline, ``recording_timeline.event_member``)
    are written in the same step. Returns ``ok``, ``conflict`` or ``stale``."""
    index_keys, index_args = recordings_index.update_arguments(sid, state, ttl_s)
    score, member = timeline if timeline is not None else (0, "")
    reply = _save_script(client)(
        keys=[keys.recording_state(sid), keys.LIFECYCLE_TIMERS, keys.recording_order(sid),
              keys.recording_timeline(sid), *index_keys],
        args=[tag, dumps(state), ttl_s, int(due_ms), sid, turn, member, score,
              recording_timeline.MAX_ENTRIES, *index_args], client=client)
    if recordings_index.prune_due():
        recordings_index.prune(client, ttl_s)
    return reply.decode() if isinstance(reply, bytes) else str(reply)
