"""Jinja filters of the dashboard: times, durations, event types."""

from __future__ import annotations

import time
from typing import Any

from agora_callbacks.ingress.dashboard import bp
from agora_callbacks.schemas import enums


@bp.app_template_filter("when")
def when(ms: Any) -> str:
    """Unix ms as ``2026-11-30 01:23:45.678`` (UTC); a dash when unknown."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return "-"
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}"


@bp.app_template_filter("ago")
def ago(ms: Any) -> str:
    """How long ago, roughly (``5 s``, ``3 min``, ``2 h``, ``4 d``)."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or ms <= 0:
        return ""
    delta = max(0.0, time.time() - ms / 1000)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if delta >= size:
            return f"{int(delta // size)} {unit} ago"
    return f"{int(delta)} s ago"


@bp.app_template_filter("event_name")
def event_name(code: Any) -> str:
    try:
        return enums.EventType(int(code)).name.lower()
    except (TypeError, ValueError):
        return f"event {code}"


@bp.app_template_filter("event_meaning")
def event_meaning(code: Any) -> str:
    try:
        return enums.EventType(int(code)).description
    except (TypeError, ValueError):
        return "Not documented."
