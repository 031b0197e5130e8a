"""``GET /metrics``: the ingress's Prometheus scrape endpoint.

Serves this process tree's metrics (every gunicorn worker's, in multi-process
mode) together with the pipeline-wide figures read from Redis at scrape time
(``agora_callbacks.metrics.scrape_registry``). The blueprint also times every
request and counts responses by route and status, so the NCS route only has to
count what it decides (received, verified, rejected, stored, store failed).
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, Response, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agora_callbacks import metrics
from ingress.state import get_state

PATH = "/metrics"
_REGISTRY = "agora_callbacks.metrics_registry"

bp = Blueprint("metrics", __name__)


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def _registry(app: Flask) -> CollectorRegistry:
    registry: CollectorRegistry | None = app.extensions.get(_REGISTRY)
    if registry is None:
        registry = metrics.scrape_registry(get_state(app).redis)
        app.extensions[_REGISTRY] = registry
    return registry


@bp.before_app_request
def _start_timer() -> None:
    g.acb_started = time.perf_counter()


@bp.after_app_request
def _observe(response: Response) -> Response:
    route = _route()
    if route != PATH:
        metrics.INGRESS_RESPONSES.labels(route, str(response.status_code)).inc()
        started = g.get("acb_started")
        if started is not None:
            metrics.INGRESS_DURATION.labels(route).observe(time.perf_counter() - started)
    return response


@bp.get(PATH)
def scrape() -> Response:
    registry = _registry(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
