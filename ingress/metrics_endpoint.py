"""``GET /metrics``: the ingress's Prometheus scrape endpoint, and request timing.

Serves this process tree's metrics (every worker process of the WSGI server, in
multi-process mode) together with the pipeline-wide figures read from Redis at
scrape time (``agora_callbacks.metrics.scrape_registry``).

Registering the blueprint also wraps the app in ``MetricsMiddleware``, which
times every request and counts responses by route and status (a WSGI middleware
rather than Flask hooks: it sees error pages too and costs less per request), so
the NCS route only counts what it decides (received, verified, rejected, stored,
store failed).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from flask.blueprints import BlueprintSetupState
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from agora_callbacks import metrics
from ingress.state import get_state

PATH = "/metrics"
_REGISTRY = "agora_callbacks.metrics_registry"
#: Route label of a path: exact routes, then prefixes; anything else is "other",
#: so a scan of random URLs cannot grow the number of series.
EXACT_ROUTES = ("/agora/ncs", "/healthz", "/readyz")
PREFIX_ROUTES = (("/recordings/", "/recordings/<sid>"),)

bp = Blueprint("metrics", __name__)


def route_of(path: str) -> str:
    if path in EXACT_ROUTES:
        return path
    for prefix, route in PREFIX_ROUTES:
        if path.startswith(prefix):
            return route
    return "other"


class MetricsMiddleware:
    """Time each request and count its response by route and status code."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        # Label children by (route, status) / route: a dict lookup per request instead
        # of prometheus_client's locked ``labels()`` (the series are bounded anyway).
        self._responses: dict[tuple[str, str], Any] = {}
        self._durations: dict[str, Any] = {}

    def _record(self, path: str, status: str, seconds: float) -> None:
        route = route_of(path)
        counter = self._responses.get((route, status))
        if counter is None:
            counter = self._responses[route, status] = metrics.INGRESS_RESPONSES.labels(
                route, status)
        histogram = self._durations.get(route)
        if histogram is None:
            histogram = self._durations[route] = metrics.INGRESS_DURATION.labels(route)
        counter.inc()
        histogram.observe(seconds)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == PATH:
            return self.app(environ, start_response)
        started = time.perf_counter()
        seen: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status[:3])
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            self._record(path, seen[0] if seen else "500", time.perf_counter() - started)


def install(app: Flask) -> None:
    """Wrap ``app`` in ``MetricsMiddleware`` (once)."""
    if not isinstance(app.wsgi_app, MetricsMiddleware):
        app.wsgi_app = MetricsMiddleware(app.wsgi_app)  # type: ignore[method-assign]


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


@bp.get(PATH)
def scrape() -> Response:
    registry = _registry(current_app._get_current_object())  # type: ignore[attr-defined]
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
