"""Pipeline health (``/ui/health``): the Prometheus figures, read from Redis."""

from __future__ import annotations

from typing import Any

from flask import render_template

from agora_callbacks import pipeline_health
from agora_callbacks.ingress.dashboard import bp
from agora_callbacks.ingress.state import get_state


@bp.get("/health")
def health() -> Any:
    figures = pipeline_health.read(get_state().redis)
    return render_template("dashboard/health.html", health=figures), (200 if figures.up else 503)
