"""The recordings list (``/ui/``) and one recording (``/ui/recordings/<sid>``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from flask import render_template, request
from jinja2 import UndefinedError

from agora_callbacks import (
    keys,
    pipeline_health,
    recording_timeline,
    recordings_index,
    recordings_query,
)
from agora_callbacks.ingress import responses
from agora_callbacks.ingress.dashboard import bp
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger
from agora_callbacks.workers.builtin import store

log = get_logger("ingress.dashboard")

PAGE_SIZE = 50


def unavailable(what: str, exc: Exception) -> Any:
    """The page that says Redis is not answering (503, ``Retry-After``)."""
    log.warning("dashboard.storage_unavailable", page=what, error=type(exc).__name__)
    retry_after = get_state().retry_after
    return (render_template("dashboard/unavailable.html", retry_after=retry_after), 503,
            {"Retry-After": retry_after})


@bp.get("/")
def recordings() -> Any:
    state = get_state()
    cursor = request.args.get("cursor", "")
    if cursor and recordings_query.parse_cursor(cursor) is None:
        return responses.error(400, "cursor: not a cursor of this list (follow its links)")
    flag = request.args.get("flag", "")
    filters = recordings_query.Filters(
        phase=request.args.get("status", "").strip(),
        flag=flag if flag in recordings_index.FLAGS else "",
        channel=request.args.get("channel", "").strip(),
        sid=request.args.get("sid", "").strip())
    try:
        page = recordings_query.page(state.redis, filters,
                                     ttl_s=state.settings.record_ttl_s,
                                     size=PAGE_SIZE, cursor=cursor)
        health = pipeline_health.read(state.redis)
    except (redis.RedisError, OSError) as exc:
        return unavailable("recordings", exc)
    return render_template("dashboard/recordings.html", page=page, filters=filters,
                           phases=recordings_index.KNOWN_PHASES,
                           flags=recordings_index.FLAGS, health=health,
                           first_page=not cursor)


@dataclass
class Row:
    """One line of the timeline: an event (with its handler runs) or a skipped gap."""

    kind: str  # "event", "gap" or "missing"
    sequence: int
    step: recording_timeline.Step | None = None
    first: int = 0
    last: int = 0


def timeline_rows(record: dict[str, Any] | None,
                  steps: list[recording_timeline.Step]) -> list[Row]:
    """Events by sequence, each gap the workers skipped marked just before the event
    after it (from the event's own ``gap`` or the record's ``sequences.gaps``)."""
    gaps: dict[int, tuple[int, int]] = {}
    sequences = (record or {}).get("sequences") or {}
    for gap in sequences.get("gaps") or []:
        if isinstance(gap, dict) and isinstance(gap.get("first"), int):
            before = gap.get("before_sequence")
            if not isinstance(before, int):
                continue
            last = gap.get("last")
            gaps[before] = (gap["first"], last if isinstance(last, int) else gap["first"])
    for step in steps:
        skipped = (step.event or {}).get("gap")
        if isinstance(skipped, list) and len(skipped) == 2:
            gaps[step.sequence] = (int(skipped[0]), int(skipped[1]))
    rows: list[Row] = []
    shown = {s.sequence for s in steps}
    for before in sorted(set(gaps) - shown):
        steps = [*steps, recording_timeline.Step(before)]
    for step in sorted(steps, key=lambda s: s.sequence):
        if step.sequence in gaps:
            first, last = gaps[step.sequence]
            rows.append(Row("gap", first, first=first, last=last))
        if step.event is not None or step.runs:
            rows.append(Row("event", step.sequence, step))
    return rows


def _detail(info: dict[str, Any]) -> str:
    """A fired phase's info as one line (``source``, ``sequence``, ``evidence``...)."""
    parts = []
    for name, value in info.items():
        if name in ("at_ms", "ms") or value in (None, "", [], {}):
            continue
        if isinstance(value, list):
            value = f"{len(value)} item{'s' if len(value) != 1 else ''}"
        parts.append(f"{name.replace('_', ' ')} {value}")
    return ", ".join(parts)


def lifecycle_rows(record: dict[str, Any] | None) -> list[tuple[str, Any, str]]:
    """Lifecycle phases the record says fired, as (phase, at_ms, detail), by time:
    ``record["lifecycle"]["fired"]`` (phase -> its info), a list of phases, or an
    object by phase; phases whose hooks are still to run are marked pending."""
    found = (record or {}).get("lifecycle")
    pending: list[Any] = []
    if isinstance(found, dict) and isinstance(found.get("fired"), dict):
        listed = found.get("pending")
        pending = listed if isinstance(listed, list) else []
        found = found["fired"]
    rows: list[tuple[str, Any, str]] = []
    if isinstance(found, dict):
        for name, value in found.items():
            info = value if isinstance(value, dict) else {"at_ms": value}
            detail = _detail(info) + ("; hooks pending" if name in pending else "")
            rows.append((str(name), info.get("at_ms", info.get("ms")), detail))
    elif isinstance(found, list):
        for item in found:
            if isinstance(item, dict):
                rows.append((str(item.get("phase") or item.get("name") or "?"),
                             item.get("at_ms"), _detail(item)))
            else:
                rows.append((str(item), None, ""))
    rows.sort(key=lambda r: r[1] if isinstance(r[1], int) else 0)
    return rows


@dataclass
class Waiting:
    """What the workers hold of the recording now: the next sequence they expect, the
    event whose handlers run (its member), and events buffered behind it."""

    next_sequence: int | None
    current: str | None
    buffered: list[int]


def waiting_of(client: redis.Redis, sid: str) -> Waiting:
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.recording_order(sid), ["next", "cur"])
    pipe.zrange(keys.recording_buffer(sid), 0, 99, withscores=True)
    (nxt, cur), buffered = pipe.execute()
    return Waiting(next_sequence=int(nxt) if nxt is not None and nxt.isdigit() else None,
                   current=cur.decode("utf-8", "replace") if cur else None,
                   buffered=[int(score) for _, score in buffered])


def unreadable(sid: str, reason: str, steps: list[recording_timeline.Step],
               waiting: Waiting) -> Any:
    """The page of a recording whose stored record is not a record (500): why, and
    what else is known (the workers' hold, the timeline, the dead letters' link)."""
    log.error("dashboard.record_unreadable", sid=sid, reason=reason)
    return render_template("dashboard/unreadable.html", sid=sid, reason=reason,
                           key=keys.recording_state(sid), rows=timeline_rows(None, steps),
                           steps=len(steps), waiting=waiting), 500


@bp.get("/recordings/<sid:sid>")
def recording(sid: str) -> Any:
    state = get_state()
    try:
        raw = state.redis.get(keys.recording_state(sid))
        steps = recording_timeline.load(state.redis, sid)
        waiting = waiting_of(state.redis, sid)
    except (redis.RedisError, OSError) as exc:
        return unavailable("recording", exc)
    try:
        record = store.decode_checked(raw)
    except store.UnreadableRecord as exc:
        return unreadable(sid, str(exc), steps, waiting)
    if record is None and not steps:
        return render_template("dashboard/missing.html", what=f"recording {sid}"), 404
    try:
        return render_template("dashboard/recording.html", sid=sid, record=record or {},
                               rows=timeline_rows(record, steps), steps=len(steps),
                               lifecycle=lifecycle_rows(record), waiting=waiting)
    except UndefinedError as exc:
        # A field deeper than shape_problem looks, of another type (``.get`` on a
        # number): the record still cannot be shown.
        return unreadable(sid, f"a field the page reads is of another type ({exc.message})",
                          steps, waiting)
