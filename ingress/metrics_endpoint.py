"""``GET /metrics``: the ingress's Prometheus scrape endpoint, and request timing.

The endpoint answers on the ingress's public port, so it is protected there: only
with ``Authorization: Bearer <METRICS_TOKEN>`` (or ``ADMIN_TOKEN``); 401 with any
other or none; 404 while neither token is set (closed by default, as the admin
endpoints are).

Serves this process tree's metrics (every worker process of the WSGI server, in
multi-process mode) together with the pipeline-wide figures read from Redis at
scrape time (``agora_callbacks.metrics.scrape_registry``).

Registering the blueprint also has ``ResponseMetrics`` told of every response by
the request-id middleware, the app's one WSGI layer: it times every request and
counts responses by route and status (error pages too, and cheaper per request than
Flask hooks or a second middleware), so the NCS route only counts what it decides
(received, verified, rejected, stored, store failed).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, request
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agora_callbacks import metrics
from agora_callbacks.ingress import request_id, responses
from agora_callbacks.ingress.admin import bearer_token, token_matches
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger

PATH = "/metrics"
_REGISTRY = "agora_callbacks.metrics_registry"
#: Route label of a path: exact routes, then prefixes; anything else is "other",
#: so a scan of random URLs cannot grow the number of series.
EXACT_ROUTES = ("/agora/ncs", "/healthz", "/readyz")
PREFIX_ROUTES = (("/recordings/", "/recordings/<sid>"),)

bp = Blueprint("metrics", __name__)
log = get_logger("ingress.metrics")


def route_of(path: str) -> str:
    if path in EXACT_ROUTES:
        return path
    for prefix, route in PREFIX_ROUTES:
        if path.startswith(prefix):
            return route
    return "other"


class ResponseMetrics:
    """Counts each response by route and status code and times it (an observer of
    ``request_id.RequestIdMiddleware``); the scrape endpoint itself is left out."""

    def __init__(self) -> None:
        # Label children by (route, status) / route: a dict lookup per request instead
        # of prometheus_client's locked ``labels()`` (the series are bounded anyway).
        self._responses: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], status: str, seconds: float) -> None:
        path = environ.get("PATH_INFO", "")
        if path == PATH:
            return
        route = route_of(path)
        counter = self._responses.get((route, status))
        if counter is None:
            counter = self._responses[route, status] = metrics.tallied(
                metrics.INGRESS_RESPONSES.labels(route, status))
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = metrics.tallied_histogram(
                metrics.INGRESS_DURATION.labels(route))
        counter.inc()
        histogram.observe(seconds)


def install(app: Flask) -> None:
    """Count and time every response of ``app`` (once)."""
    layer = request_id.install(app)
    if not any(isinstance(o, ResponseMetrics) for o in layer.observers):
        layer.observers.append(ResponseMetrics())


@bp.record_once
def _on_register(state: BlueprintSetupState) -> None:
    assert isinstance(state.app, Flask)
    install(state.app)


def _registry(app: Flask) -> CollectorRegistry:
    registry: CollectorRegistry | None = app.extensions.get(_REGISTRY)
    if registry is None:
        registry = metrics.scrape_registry(get_state(app).redis)
        app.extensions[_REGISTRY] = registry
    return registry


def _refusal() -> Response | None:
    """None when the request may scrape, else the answer (404 or 401)."""
    settings = get_state().settings
    tokens = [t.encode("utf-8") for t in (settings.metrics_token, settings.admin_token) if t]
    if not tokens:
        return responses.error(404, "not found")
    presented = bearer_token()
    if any(token_matches(presented, token) for token in tokens):
        return None
    log.info("metrics.unauthorized", path=request.path)
    response = responses.unauthorized()
    response.headers["WWW-Authenticate"] = 'Bearer realm="agora-callbacks metrics"'
    return response


@bp.get(PATH)
def scrape() -> Response:
    refused = _refusal()
    if refused is not None:
        return refused
    registry = _registry(current_app._get_current_object())  # type: ignore[attr-defined]
    metrics.INGRESS_TALLY.flush()  # this process's counts are in every scrape
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
