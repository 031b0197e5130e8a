"""Reading the dashboard's index (``agora_callbacks.recordings_index``): one page of
the recordings list, newest update first, with its filters and cursor."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from agora_callbacks import keys
from agora_callbacks.recordings_index import (
    ALL,
    channel_index,
    flag_index,
    phase_index,
)

#: A filtered page stops after looking at this many candidates (and offers "older").
SCAN_LIMIT = 5000
#: Most recordings a sid-prefix search returns.
SID_MATCHES = 200


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


#: Bound of each cursor number (Redis reads a ``LIMIT`` offset as a signed 64-bit one).
_CURSOR_MAX = 2**63 - 1


def parse_cursor(raw: str) -> tuple[int, int, int] | None:
    """``"<score>:<skip>:<facet>"``: start at members scored ``score`` or less, skipping
    the first ``skip`` of those scored exactly ``score`` (already shown), in the
    ``facet``-th set the filters name (the one the first page chose to walk).
    None when ``raw`` is not such a cursor (more parts, or a number out of range)."""
    parts = raw.split(":")
    if len(parts) > 3:
        return None
    try:
        score, skip, facet = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0,
                              int(parts[2]) if len(parts) > 2 else 0)
    except ValueError:
        return None
    if any(abs(n) > _CURSOR_MAX for n in (score, skip, facet)):
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
