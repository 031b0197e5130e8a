"""``GET /metrics``: the ingress's Prometheus scrape endpoint.

Serves this process tree's metrics (every gunicorn worker's, in multi-process
mode) together with the pipeline-wide figures read from Redis at scrape time
(``agora_callbacks.metrics.scrape_registry``). The blueprint also times every
request and counts responses by route and status, so the ingress code only has to
count what it decides (received, verified, rejected, stored, store failed).
"""

from __future__ import annotations

import time

import redis
from flask import Blueprint, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from agora_callbacks import metrics


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def metrics_blueprint(client: redis.Redis) -> Blueprint:
    """The blueprint serving ``GET /metrics``, reading pipeline figures with ``client``."""
    blueprint = Blueprint("metrics", __name__)
    registry = metrics.scrape_registry(client)

    @blueprint.before_app_request
    def _start_timer() -> None:
        g.acb_started = time.perf_counter()

    @blueprint.after_app_request
    def _observe(response: Response) -> Response:
        started = g.get("acb_started")
        route = _route()
        if route != "/metrics":
            metrics.INGRESS_RESPONSES.labels(route, str(response.status_code)).inc()
            if started is not None:
                metrics.INGRESS_DURATION.labels(route).observe(time.perf_counter() - started)
        return response

    @blueprint.get("/metrics")
    def scrape() -> Response:
        return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return blueprint
