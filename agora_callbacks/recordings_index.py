"""The dashboard's index of recordings: what ``/ui/`` lists, kept as records change.

Written in the same MULTI as the record itself (``workers.builtin.store.save`` calls
``queue_update``), so the index never disagrees with the record:

- ``keys.recording_summary(sid)``: a small JSON of what the list shows (phase, kind,
  channel, times, counts), expiring with the record (``RECORDING_STATE_TTL_S``);
- sorted sets of sids scored by the record's last update (unix ms), one per facet
  the list filters on: ``all``, ``phase:<phase>``, ``flag:<flag>`` (errors, gaps,
  late, deadletters) and ``channel:<cname>``; plus ``keys.DASHBOARD_SIDS`` (lex) for
  the sid-prefix search.

A page of the list is one ``ZRANGE ... BYSCORE REV LIMIT`` on the narrowest facet
and one ``MGET`` of the summaries: O(log N + page), whatever the number of
recordings (no ``KEYS``/``SCAN``). Members older than the retention are never
shown (the read's lower score bound) and are removed by ``prune``, which the
saving processes run at most once a minute; a channel's set expires as a whole.

The ``deadletters`` flag is set when a handler of the recording is dead-lettered
(``mark_deadletter``, from ``agora_callbacks.recording_timeline``); a later update
of the record keeps it (``ZADD XX``) until it ages out with the record.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
#: A filtered page stops after looking at this many candidates (and offers "older").
SCAN_LIMIT = 5000
#: Most recordings a sid-prefix search returns.
SID_MATCHES = 200

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
    """The record's flags (``deadletters`` is set elsewhere: ``mark_deadletter``)."""
    return {"errors": summary["errors"] > 0, "gaps": summary["gaps"] > 0,
            "late": summary["late"] > 0}


_prune_lock = threading.Lock()
_next_prune = 0.0

# One script call per update (instead of ~20 commands): the sets of every other
# phase lose the sid server-side. KEYS: summary, all, sids, deadletters flag,
# errors/gaps/late flags, channel (or the summary again when there is none), then
# the record's phase and every other known phase. ARGV: summary JSON, ttl_s, now_ms,
# sid, has channel, the three flags (1/0).
_UPDATE = """
local ttl, now, sid = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('ZADD', KEYS[2], now, sid)
redis.call('ZADD', KEYS[3], 0, sid)
redis.call('ZADD', KEYS[4], 'XX', now, sid)
for i = 0, 2 do
  if ARGV[6 + i] == '1' then redis.call('ZADD', KEYS[5 + i], now, sid)
  else redis.call('ZREM', KEYS[5 + i], sid) end
end
if ARGV[5] == '1' then
  redis.call('ZADD', KEYS[8], now, sid)
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. (now - ttl * 1000))
  redis.call('EXPIRE', KEYS[8], ttl)
end
redis.call('ZADD', KEYS[9], now, sid)
for i = 10, #KEYS do redis.call('ZREM', KEYS[i], sid) end
return 1
"""


def queue_update(pipe: redis.client.Pipeline, sid: str, record: Mapping[str, Any],
                 ttl_s: int, now_ms: int | None = None) -> None:
    """Queue the index writes for ``record`` (just saved) on ``pipe``: one script call."""
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
    # EVAL, not EVALSHA: a pipeline running a registered script first asks the server
    # whether it has it (SCRIPT EXISTS), one more round trip per save.
    pipe.eval(_UPDATE, len(script_keys), *script_keys, *args)


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
    """Remove up to ``limit`` recordings whose record aged out; return how many."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    facets = [phase_index(p) for p in KNOWN_PHASES] + [flag_index(f) for f in FLAGS]
    script = client.register_script(_PRUNE)
    return int(script(keys=[ALL, keys.DASHBOARD_SIDS, *facets],
                      args=[now_ms - ttl_s * 1000, limit]))


def mark_deadletter(pipe: redis.Redis | redis.client.Pipeline, sid: str,
                    now_ms: int) -> None:
    """The recording has a dead-lettered handler run: set its ``deadletters`` flag."""
    pipe.zadd(flag_index("deadletters"), {sid: now_ms})


# --- reading -------------------------------------------------------------------------


@dataclass(frozen=True)
class Filters:
    """The list's filters; empty strings mean "any"."""

    phase: str = ""
    flag: str = ""
    channel: str = ""
    sid: str = ""

    def facets(self) -> list[str]:
        """The index sets a listed recording must be in (``all`` when no filter)."""
        named = []
        if self.channel:
            named.append(channel_index(self.channel))
        if self.flag:
            named.append(flag_index(self.flag))
        if self.phase:
            named.append(phase_index(self.phase))
        return named or [ALL]

    def matches(self, summary: Mapping[str, Any], deadletters: bool) -> bool:
        if self.phase and summary.get("phase") != self.phase:
            return False
        if self.channel and summary.get("cname") != self.channel:
            return False
        if self.flag == "deadletters":
            return deadletters
        if self.flag:
            return bool(summary.get(self.flag))
        return True


@dataclass
class Page:
    """One page of the list, newest first."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    #: The cursor of the next (older) page, or "" when this is the last one.
    next_cursor: str = ""
    #: Recordings in the walked facet within the retention: all those listed when
    #: ``exact``, else an upper bound (other facets filter them).
    total: int = 0
    exact: bool = True
    #: Candidates looked at for this page (filters other than the walked facet).
    scanned: int = 0


def parse_cursor(raw: str) -> tuple[int, int, int] | None:
    """``"<score>:<skip>:<facet>"``: start at members scored ``score`` or less, skipping
    the first ``skip`` of those scored exactly ``score`` (already shown), in the
    ``facet``-th set the filters name (the one the first page chose to walk)."""
    parts = raw.split(":")
    try:
        score, skip, facet = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0,
                              int(parts[2]) if len(parts) > 2 else 0)
    except ValueError:
        return None
    return score, max(0, skip), max(0, facet)


def _rows(client: redis.Redis, sids: list[str]) -> list[tuple[dict[str, Any] | None, bool]]:
    if not sids:
        return []
    pipe = client.pipeline(transaction=False)
    pipe.mget([keys.recording_summary(s) for s in sids])
    pipe.zmscore(flag_index("deadletters"), sids)
    raw, dead = pipe.execute()
    out: list[tuple[dict[str, Any] | None, bool]] = []
    for blob, score in zip(raw, dead, strict=True):
        summary = json.loads(blob) if blob else None
        out.append((summary if isinstance(summary, dict) else None, score is not None))
    return out


def page(client: redis.Redis, filters: Filters, *, ttl_s: int, size: int = 50,
         cursor: str = "", now_ms: int | None = None) -> Page:
    """A page of recordings matching ``filters``, newest update first.

    It walks the smallest set the filters name (by score, from the cursor) and keeps
    the sids the other named sets hold too (``ZMSCORE``, a batch at a time), giving
    up after ``SCAN_LIMIT`` candidates (the next page goes on from there)."""
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    floor = now_ms - ttl_s * 1000
    if filters.sid:
        return _by_sid(client, filters, floor)
    facets = filters.facets()
    start = parse_cursor(cursor) if cursor else None
    if start is not None:
        top, skip, walked = start[0], start[1], min(start[2], len(facets) - 1)
    else:
        top, skip, walked = None, 0, 0
        if len(facets) > 1:
            pipe = client.pipeline(transaction=False)
            for facet in facets:
                pipe.zcard(facet)
            sizes = pipe.execute()
            walked = sizes.index(min(sizes))
    key = facets[walked]
    others = [f for i, f in enumerate(facets) if i != walked]
    result = Page(total=int(client.zcount(key, floor, "+inf")), exact=not others)
    batch = size if not others else 500
    while result.scanned < SCAN_LIMIT:
        found: Any = client.zrange(
            key, "+inf" if top is None else top, floor, desc=True, byscore=True,
            offset=skip, num=batch, withscores=True)
        sids = [m.decode() for m, _ in found]
        held = _held(client, others, sids)
        chosen: list[str] = []
        full = False
        for sid, (_, raw_score), ok in zip(sids, found, held, strict=True):
            score = int(raw_score)
            skip = skip + 1 if score == top else 1
            top = score
            result.scanned += 1
            if ok:
                chosen.append(sid)
                if len(result.rows) + len(chosen) == size:
                    full = True
                    break
        for sid, (summary, dead) in zip(chosen, _rows(client, chosen), strict=True):
            if summary is not None and filters.matches(summary, dead):
                result.rows.append({**summary, "sid": sid, "deadletters": dead})
        if full:
            break
        if len(found) < batch:
            return result  # the walked set is exhausted: no older page
    result.next_cursor = f"{top}:{skip}:{walked}"
    return result


def _held(client: redis.Redis, others: list[str], sids: list[str]) -> list[bool]:
    """For each sid, whether every set in ``others`` holds it."""
    if not others or not sids:
        return [True] * len(sids)
    pipe = client.pipeline(transaction=False)
    for other in others:
        pipe.zmscore(other, sids)
    scores = pipe.execute()
    return [all(s[i] is not None for s in scores) for i in range(len(sids))]


def _by_sid(client: redis.Redis, filters: Filters, floor: int) -> Page:
    prefix = filters.sid
    found: Any = client.zrangebylex(
        keys.DASHBOARD_SIDS, f"[{prefix}", f"[{prefix}\xff", start=0, num=SID_MATCHES)
    sids = [s.decode() for s in found]
    rows = []
    for sid, (summary, dead) in zip(sids, _rows(client, sids), strict=True):
        if summary is None or int(summary.get("updated_ms") or 0) < floor:
            continue
        if filters.matches(summary, dead):
            rows.append({**summary, "sid": sid, "deadletters": dead})
    rows.sort(key=lambda r: -int(r.get("updated_ms") or 0))
    return Page(rows=rows, total=len(rows), scanned=len(sids))
