"""The recording record (``"version": 1``) and the small rules that change it.

A record is a plain JSON-ready dict; ``new_record`` lists every field. The
per-event rules in ``agora_callbacks.workers.builtin.events`` change it only through the helpers
here, which hold the invariants: the phase moves only with a current event and
never leaves a terminal phase; lists stay bounded; files merge by name;
sequences are kept as compact ranges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agora_callbacks.schemas import enums
from agora_callbacks.workers.builtin.meanings import PHASES, TERMINAL_PHASES, coded, plain

VERSION = 1
#: Longest kept length of a list that grows with the recording (errors, reloads...).
MAX_ITEMS = 100
#: Most files kept (a long individual recording of 17 users lists a few dozen).
MAX_FILES = 1000


def field(obj: Any, name: str, default: Any = None) -> Any:
    """An attribute of a typed object, or an item of a mapping (unknown details)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def as_int(value: Any) -> int | None:
    value = plain(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: ``exitStatus`` of a normal exit (11): 0, or none at all (the reference defines 0
#: and 1, and Agora sends one; an 11 without it must still end the recording). The
#: record's status and the lifecycle read it alike.
NORMAL_EXIT = (int(enums.ExitStatus.NORMAL), None)


def as_str(value: Any) -> str | None:
    return None if value is None else str(plain(value))


@dataclass(frozen=True)
class Context:
    """One event as the rules see it. ``current``: newer than every event folded so far."""

    event: Any
    details: Any
    event_type: Any
    sequence: int | None
    at_ms: int | None
    current: bool

    def get(self, name: str) -> Any:
        """A field of the event's details."""
        return field(self.details, name)


def new_record(sid: str) -> dict[str, Any]:
    """The record of a recording before its first event."""
    return {
        "version": VERSION,
        "sid": sid,
        "cname": None,
        "uid": None,
        "mode": None,
        "status": {"phase": "unknown", "meaning": PHASES["unknown"], "event_type": None,
                   "sequence": None, "at_ms": None},
        "service_status": None,
        "times": {"first_event_ms": None, "last_event_ms": None, "started_ms": None,
                  "slice_started_ms": None, "stopped_ms": None, "exited_ms": None},
        "files": [],
        "snapshots": [],
        "upload": {"started": False, "progress": None, "percent": None, "completed": False,
                   "backup_used": False, "status": None},
        "errors": [],
        "warnings": [],
        "leaves": [],
        "exit": None,
        "failovers": [],
        "interruptions": [],
        "streams": {},
        "transcoding": {"started_ms": None, "completed": None, "final": None,
                        "download_failures": []},
        "web": None,
        "sequences": {"last": None, "seen": [], "missing": [], "gaps": [], "late": []},
        "event_count": 0,
        "event_types": {},
        "dropped": {},
        "recent_keys": [],
    }


def set_phase(record: dict[str, Any], ctx: Context, phase: str) -> None:
    """Move the lifecycle phase, unless the event is late or the phase is terminal.

    An exit event (11) always records its phase unless a later exit did already."""
    status = record["status"]
    is_exit = ctx.event_type == enums.EventType.SESSION_EXIT
    if status["phase"] in TERMINAL_PHASES:
        if not (is_exit and ctx.current):
            return
    elif not ctx.current and not is_exit:
        return
    record["status"] = {"phase": phase, "meaning": PHASES[phase],
                        "event_type": as_int(ctx.event_type), "sequence": ctx.sequence,
                        "at_ms": ctx.at_ms}


def set_time(record: dict[str, Any], name: str, ctx: Context, *, earliest: bool = False,
             value: Any = None) -> None:
    """Set ``times[name]`` from ``value`` (default: the event's ``sendts``).

    ``earliest``: keep the smallest value seen (a start); else the current event's."""
    at = as_int(value if value is not None else ctx.at_ms)
    if at is None:
        return
    times = record["times"]
    old = times[name]
    if old is None or (earliest and at < old) or (not earliest and ctx.current):
        times[name] = at


def set_mode(record: dict[str, Any], mode: str) -> None:
    """Web wins over channel modes (a web recording's files may say mixedAllUser)."""
    if record["mode"] != "web":
        record["mode"] = mode


def set_mode_from_code(record: dict[str, Any], code: Any) -> None:
    value = as_int(code)
    if value == enums.RecordingMode.INDIVIDUAL:
        set_mode(record, "individual")
    elif value == enums.RecordingMode.COMPOSITE:
        set_mode(record, "composite")


def append_bounded(record: dict[str, Any], name: str, item: Any,
                   container: dict[str, Any] | None = None) -> None:
    """Append to a list, keeping its last ``MAX_ITEMS`` and counting what is dropped."""
    target = record if container is None else container
    items = [*target[name], item]
    if len(items) > MAX_ITEMS:
        dropped = record["dropped"]
        dropped[name] = dropped.get(name, 0) + len(items) - MAX_ITEMS
        items = items[-MAX_ITEMS:]
    target[name] = items


def merge_file(record: dict[str, Any], ctx: Context, name: str | None,
               **attrs: Any) -> None:
    """Add or complete the file ``name``: known attributes are kept, new ones filled in."""
    if not name:
        return
    files = {f["file_name"]: f for f in record["files"]}
    if name not in files and len(files) >= MAX_FILES:
        record["dropped"]["files"] = record["dropped"].get("files", 0) + 1
        return
    entry = files.get(name) or {"file_name": name, "track_type": None, "track_meaning": None,
                                "uid": None, "playable": None, "mixed_all_user": None,
                                "slice_start_ms": None, "events": []}
    for key, value in attrs.items():
        if value is not None and (entry.get(key) is None or ctx.current):
            entry[key] = value
    event_type = as_int(ctx.event_type)
    if event_type is not None and event_type not in entry["events"]:
        entry["events"] = sorted([*entry["events"], event_type])
    files[name] = entry
    record["files"] = [files[k] for k in sorted(files)]


def add_file_list(record: dict[str, Any], ctx: Context, file_list: Any) -> None:
    """A ``fileList`` as events 31, 32 and 71 send it (objects), or as 3 and 4 do (a name)."""
    if file_list is None:
        return
    if isinstance(file_list, str):
        for name in file_list.split(";"):
            merge_file(record, ctx, name.strip() or None)
        return
    for item in file_list if isinstance(file_list, Iterable) else ():
        track = field(item, "track_type")
        mixed = field(item, "mixed_all_user")
        merge_file(
            record, ctx, as_str(field(item, "file_name")),
            track_type=as_str(track),
            track_meaning=(coded(track, enums.TrackType) or {}).get("meaning"),
            uid=as_str(field(item, "uid")),
            playable=field(item, "is_playable"),
            mixed_all_user=mixed,
            slice_start_ms=as_int(field(item, "slice_start_time")),
        )
        if isinstance(mixed, bool):
            set_mode(record, "composite" if mixed else "individual")


def _ranges_add(ranges: list[list[int]], n: int) -> list[list[int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted([*ranges, [n, n]]):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return merged


def _holes(ranges: list[list[int]]) -> list[int]:
    """Sequences missing below the highest seen (from 0), at most ``MAX_ITEMS``."""
    out: list[int] = []
    expected = 0
    for lo, hi in ranges:
        # Bounded: a sequence may jump by 2**52 (never build that range).
        out.extend(range(expected, min(lo, expected + MAX_ITEMS - len(out))))
        expected = hi + 1
        if len(out) >= MAX_ITEMS:
            break
    return out[:MAX_ITEMS]


def parse_gap(gap: Any) -> list[int] | None:
    """The workers' ``gap`` argument as ``[first, last]`` skipped sequences, if any.

    Accepts ``"a-b"`` (as the ordering script reports it), ``(a, b)`` or one int."""
    if gap is None or gap is False or gap == "":
        return None
    if isinstance(gap, int) and not isinstance(gap, bool):
        return [gap, gap]
    if isinstance(gap, str):
        lo, _, hi = gap.partition("-")
        try:
            return [int(lo), int(hi or lo)]
        except ValueError:
            return None
    if isinstance(gap, list | tuple) and len(gap) == 2:
        lo_i, hi_i = as_int(gap[0]), as_int(gap[1])
        if lo_i is not None and hi_i is not None:
            return [lo_i, hi_i]
    return None


def track_sequence(record: dict[str, Any], ctx: Context, *, late: bool, gap: Any) -> None:
    """Last sequence, seen ranges, sequences still missing, reported gaps, late events."""
    seqs = record["sequences"]
    skipped = parse_gap(gap)
    if skipped is not None:
        append_bounded(record, "gaps", {"first": skipped[0], "last": skipped[1],
                                        "before_sequence": ctx.sequence}, seqs)
    if ctx.sequence is None:
        return
    if late:
        append_bounded(record, "late", {"sequence": ctx.sequence,
                                        "event_type": as_int(ctx.event_type)}, seqs)
    seqs["seen"] = _ranges_add(seqs["seen"], ctx.sequence)
    if seqs["last"] is None or ctx.sequence > seqs["last"]:
        seqs["last"] = ctx.sequence
    seqs["missing"] = _holes(seqs["seen"])
