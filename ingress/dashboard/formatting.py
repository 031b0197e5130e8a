"""Jinja filters of the dashboard: times, durations, figures, event types."""

from __future__ import annotations

import math
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


@bp.app_template_filter("figure")
def figure(value: Any) -> str:
    """A metric's value in full: a whole number as such (``12345678``, not ``%g``'s
    ``1.23457e+07``), another to the thousandth (``1795550467.995``, ``0.001``)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    if not math.isfinite(value):
        return str(value)
    if value == int(value):
        return str(int(value))
    return f"{value:.3f}"


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
