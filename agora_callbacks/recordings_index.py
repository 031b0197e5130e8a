"""The dashboard's index of recordings: what ``/ui/`` lists, kept as records change.

Written in the same atomic step as the record itself (the workers' compare-and-set
``workers.builtin.store.save_if`` runs ``UPDATE_FUNCTION`` in its script; the
unconditional ``store.save`` of tools queues ``queue_update`` in its MULTI), so the
index never disagrees with the record:

- ``keys.recording_summary(sid)``: a small JSON of what the list shows (phase, kind,
  channel, times, counts), expiring with the record (``RECORD_TTL_S``);
- sorted sets of sids scored by the record's last update (unix ms), one per facet
  the list filters on: ``all``, ``phase:<phase>``, ``flag:<flag>`` (errors, gaps,
  late, deadletters) and ``channel:<cname>``; plus ``keys.DASHBOARD_SIDS`` (lex) for
  the sid-prefix search.

Reading a page is ``agora_callbacks.recordings_query``: one ``ZRANGE ... BYSCORE REV
LIMIT`` on a facet and one ``MGET`` of the summaries, O(log N + page) whatever the
number of recordings (no ``KEYS``/``SCAN``). Members older than the retention are never
shown (the read's lower score bound) and are removed by ``prune``, which
``queue_update`` adds to a saving process's transaction at most once a minute; a
channel's set expires as a whole.

The ``deadletters`` flag is set when a handler of the recording is dead-lettered,
with that run's timeline member (``agora_callbacks.recording_timeline``), by the
ordering script that writes the dead letter (``finish.lua``; the deadline sweep for
a ``lost`` one); a later update of the record keeps it (``ZADD XX``) until it ages
out with the record.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import redis

from agora_callbacks import keys

#: Flags the list filters on ("has ...").
FLAGS = ("errors", "gaps", "late", "deadletters")
#: Lifecycle phases whose sets an update keeps exact (the record's phase joins them).
KNOWN_PHASES = ("unknown", "starting", "recording", "failing_over", "stopped", "uploaded",
                "transcoding", "transcoded", "failed", "exited", "exited_abnormally")
#: Most removed per ``prune`` call, and how often a saving process runs it.
PRUNE_LIMIT = 1000
PRUNE_INTERVAL_S = 60.0

ALL = keys.dashboard_index("all")

_PRUNE = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])
if #old == 0 then return 0 end
redis.call('ZREM', KEYS[1], unpack(old))
redis.call('ZREM', KEYS[2], unpack(old))
for i = 3, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[1])
end
return #old
"""


def phase_index(phase: str) -> str:
    return keys.dashboard_index(f"phase:{phase}")


def flag_index(flag: str) -> str:
    return keys.dashboard_index(f"flag:{flag}")


def channel_index(cname: str) -> str:
    return keys.dashboard_index(f"channel:{cname}")


def _get(obj: Any, *path: str) -> Any:
    """A nested field read defensively: None where any level is missing."""
    for name in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(name)
    return obj


def _count(record: Mapping[str, Any], name: str, container: Any = None) -> int:
    items = (container if container is not None else record).get(name) or []
    dropped = _get(record, "dropped", name) or 0
    return (len(items) if isinstance(items, list) else 0) + int(dropped)


def summarize(record: Mapping[str, Any], updated_ms: int) -> dict[str, Any]:
    """What the list shows of one record (every field optional in the record)."""
    seqs = record.get("sequences") or {}
    errors = record.get("errors") or []
    return {
        "sid": record.get("sid"),
        "cname": record.get("cname"),
        "mode": record.get("mode"),
        "phase": _get(record, "status", "phase") or "unknown",
        "meaning": _get(record, "status", "meaning"),
        "started_ms": _get(record, "times", "started_ms"),
        "first_event_ms": _get(record, "times", "first_event_ms"),
        "last_event_ms": _get(record, "times", "last_event_ms"),
        "stopped_ms": _get(record, "times", "stopped_ms"),
        "exited_ms": _get(record, "times", "exited_ms"),
        "files": len(record.get("files") or []) + int(_get(record, "dropped", "files") or 0),
        "errors": _count(record, "errors"),
        "fatal": any(isinstance(e, Mapping) and e.get("fatal") for e in errors),
        "warnings": _count(record, "warnings"),
        "gaps": _count(record, "gaps", seqs),
        "late": _count(record, "late", seqs),
        "missing": len(seqs.get("missing") or []),
        "event_count": record.get("event_count") or 0,
        "updated_ms": updated_ms,
    }


def flags_of(summary: Mapping[str, Any]) -> dict[str, bool]:
    """The record's flags (``deadletters`` is set by the ordering scripts, with the
    dead-lettered run's timeline member)."""
    return {"errors": summary["errors"] > 0, "gaps": summary["gaps"] > 0,
            "late": summary["late"] > 0}


_prune_lock = threading.Lock()
_next_prune = 0.0

# One script call per update (instead of ~20 commands): the sets of every other
# phase lose the sid server-side. ``UPDATE_FUNCTION`` is a Lua function so that the
# record's own compare-and-set script (``workers.builtin.store.save_if``) runs it in
# the same atomic step as the record's write. K (keys): summary, all, sids,
# deadletters flag, errors/gaps/late flags, channel (or the summary again when there
# is none), then the record's phase and every other known phase. A (args): summary
# JSON, ttl_s, now_ms, sid, has channel, the three flags (1/0).
UPDATE_FUNCTION = """
local function index_update(K, A)
  local ttl, now, sid = tonumber(A[2]), tonumber(A[3]), A[4]
  redis.call('SET', K[1], A[1], 'EX', ttl)
  redis.call('ZADD', K[2], now, sid)
  redis.call('ZADD', K[3], 0, sid)
  redis.call('ZADD', K[4], 'XX', now, sid)
  for i = 0, 2 do
    if A[6 + i] == '1' then redis.call('ZADD', K[5 + i], now, sid)
    else redis.call('ZREM', K[5 + i], sid) end
  end
  if A[5] == '1' then
    redis.call('ZADD', K[8], now, sid)
    redis.call('ZREMRANGEBYSCORE', K[8], '-inf', '(' .. (now - ttl * 1000))
    redis.call('EXPIRE', K[8], ttl)
  end
  redis.call('ZADD', K[9], now, sid)
  for i = 10, #K do redis.call('ZREM', K[i], sid) end
  return 1
end
"""
_UPDATE = UPDATE_FUNCTION + "return index_update(KEYS, ARGV)\n"


def update_arguments(sid: str, record: Mapping[str, Any], ttl_s: int,
                     now_ms: int | None = None) -> tuple[list[str], list[Any]]:
    """The keys and arguments of ``index_update`` for ``record`` (just saved)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    summary = summarize(record, now_ms)
    phase = str(summary["phase"])
    cname = summary["cname"]
    flags = flags_of(summary)
    summary_key = keys.recording_summary(sid)
    script_keys = [summary_key, ALL, keys.DASHBOARD_SIDS, flag_index("deadletters"),
                   *(flag_index(f) for f in ("errors", "gaps", "late")),
                   channel_index(str(cname)) if cname else summary_key,
                   phase_index(phase), *(phase_index(p) for p in KNOWN_PHASES if p != phase)]
    args = [json.dumps(summary, separators=(",", ":")), ttl_s, now_ms, sid,
            "1" if cname else "0", *("1" if flags[f] else "0" for f in ("errors", "gaps", "late"))]
    return script_keys, args


def queue_update(pipe: redis.client.Pipeline, sid: str, record: Mapping[str, Any],
                 ttl_s: int, now_ms: int | None = None) -> None:
    """Queue the index writes for ``record`` (just saved) on ``pipe``: one script call
    (and, at most once a minute per process, the ``prune`` of aged-out entries)."""
    script_keys, args = update_arguments(sid, record, ttl_s, now_ms)
    # EVAL, not EVALSHA: a pipeline running a registered script first asks the server
    # whether it has it (SCRIPT EXISTS), one more round trip per save.
    pipe.eval(_UPDATE, len(script_keys), *script_keys, *args)
    if prune_due():
        pipe.eval(_PRUNE, *_prune_args(ttl_s, int(args[2]), PRUNE_LIMIT))


def update(client: redis.Redis, sid: str, record: Mapping[str, Any], ttl_s: int) -> None:
    """``queue_update`` on its own (one round trip), for a record saved elsewhere."""
    pipe = client.pipeline(transaction=False)
    queue_update(pipe, sid, record, ttl_s)
    pipe.execute()


def prune_due() -> bool:
    """Whether this process should run ``prune`` now (at most once a minute)."""
    global _next_prune
    now = time.monotonic()
    with _prune_lock:
        if now < _next_prune:
            return False
        _next_prune = now + PRUNE_INTERVAL_S
        return True


def prune(client: redis.Redis, ttl_s: int, now_ms: int | None = None,
          limit: int = PRUNE_LIMIT) -> int:
    """Remove up to ``limit`` recordings whose record aged out; return how many.
    (``queue_update`` runs it in a saving process at most once a minute.)"""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    return int(client.eval(_PRUNE, *_prune_args(ttl_s, now_ms, limit)))


#: The index's keys without an expiry: ``prune`` trims them (their bound).
TRIMMED_KEYS = (ALL, keys.DASHBOARD_SIDS, *(phase_index(p) for p in KNOWN_PHASES),
                *(flag_index(f) for f in FLAGS))


def _prune_args(ttl_s: int, now_ms: int, limit: int) -> list[Any]:
    return [len(TRIMMED_KEYS), *TRIMMED_KEYS, now_ms - ttl_s * 1000, limit]


def rebuild(client: redis.Redis, ttl_s: int, batch: int = 500) -> int:
    """Index every stored record (those saved before the index existed, or after its
    keys were lost); return how many. A one-off maintenance pass: it walks the
    keyspace with ``SCAN`` (never a page of the dashboard). A record's last update
    is taken from its remaining time to live (``RECORD_TTL_S`` - TTL)."""
    now_ms = int(time.time() * 1000)
    done = 0
    names = client.scan_iter(match=keys.recording_state("*"), count=batch)
    while True:
        chunk = [name for _, name in zip(range(batch), names, strict=False)]
        if not chunk:
            return done
        read = client.pipeline(transaction=False)
        for name in chunk:
            read.get(name)
            read.pttl(name)
        values = read.execute()
        write = client.pipeline(transaction=False)
        for raw, left_ms in zip(values[::2], values[1::2], strict=True):
            try:
                record = json.loads(raw) if raw else None
            except ValueError:
                record = None
            if not isinstance(record, dict) or not record.get("sid") or left_ms <= 0:
                continue
            updated = now_ms - max(0, ttl_s * 1000 - left_ms)
            queue_update(write, str(record["sid"]), record, max(1, left_ms // 1000),
                         now_ms=updated)
            done += 1
        write.execute()
