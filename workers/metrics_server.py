"""The worker's Prometheus scrape endpoint: ``/metrics`` on ``WORKER_METRICS_PORT``.

- When the worker starts (Celery's ``celeryd_init``, in the main process before
  the prefork pool forks), metrics switch to multi-process mode unless the
  process was started in it, so the handler runs of every pool child are counted;
- ``MetricsServerStep``, a bootstep of the worker, serves this worker's metrics
  and the pipeline-wide figures read from Redis (``agora_callbacks.metrics``) from
  a thread of the main process, and stops with the worker. Several workers on one
  host each take the first free port of ``WORKER_METRICS_PORT`` and the
  ``PORT_SPAN - 1`` ports after it (scrape that range); when all are taken, the
  worker logs it and serves none, never fatal.

The same port answers ``/healthz``: 200 while the worker's intake process
(``workers.bootstep.IntakeStep``) is running, 503 while it is down, being
restarted or hung, for a liveness probe or a load balancer; every other path serves the
metrics, with ``acb_worker_intake_up`` (1 or 0, the same fact) and
``acb_worker_intake_restarts_total`` among them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from celery import bootsteps, signals
from prometheus_client import make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agora_callbacks import metrics, metrics_dir
from agora_callbacks.logs import get_logger
from agora_callbacks.workers import runtime
from agora_callbacks.workers.bootstep import IntakeStep

log = get_logger("workers.metrics_server")

#: How many ports, from ``WORKER_METRICS_PORT`` on, the workers of one host may take.
PORT_SPAN = 16


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No line per scrape on stderr."""


def endpoint_app(registry: Any, healthy: Callable[[], bool] | None = None) -> Any:
    """The WSGI app of the endpoint: ``/healthz`` (200 when ``healthy()``, else 503;
    always 200 without ``healthy``), the metrics of ``registry`` on every other path."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics_app(environ, start_response)
        ok = healthy is None or healthy()
        body = b"ok\n" if ok else b"intake down\n"
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return [body]

    return app


def serve_on_first_free_port(first: int, registry: Any, span: int = PORT_SPAN,
                             healthy: Callable[[], bool] | None = None
                             ) -> tuple[int, Any, Any]:
    """Serve ``endpoint_app(registry, healthy)`` on the first free port of
    ``first .. first + span - 1``, from a daemon thread; return (port, server,
    thread). Raises the last ``OSError`` when every port of the range is taken."""
    app = endpoint_app(registry, healthy)
    error: OSError | None = None
    for port in range(first, first + span):
        try:
            server = make_server("0.0.0.0", port, app, server_class=_Server,
                                 handler_class=_QuietHandler)
        except OSError as exc:
            error = exc
            continue
        thread = threading.Thread(target=server.serve_forever, name="agora-metrics",
                                  daemon=True)
        thread.start()
        return port, server, thread
    assert error is not None
    raise error


class IntakeCollector(Collector):
    """``acb_worker_intake_up`` and ``acb_worker_intake_restarts_total`` of one worker."""

    def __init__(self, step: IntakeStep) -> None:
        self._step = step

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "acb_worker_intake_up",
            "1 while this worker's intake process runs (reads the inbox, sweeps timers), "
            "0 while it is down, restarting or hung.", value=1 if self._step.up() else 0)
        yield CounterMetricFamily(
            "acb_worker_intake_restarts",
            "Intake processes this worker started again after one died.",
            value=self._step.restarts)


@signals.celeryd_init.connect
def _multiprocess(sender: Any = None, **kwargs: Any) -> None:
    path = metrics.use_multiprocess("worker")
    log.info("metrics multi-process mode", directory=path)


@signals.worker_shutdown.connect
def _remove_multiprocess_dir(sender: Any = None, **kwargs: Any) -> None:
    metrics_dir.cleanup()


class MetricsServerStep(bootsteps.StartStopStep):
    """Serves ``/metrics`` from the worker's main process."""

    label = "agora metrics"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._server: Any = None
        self._thread: Any = None

    def start(self, parent: Any) -> None:
        rt = runtime.get()
        port = rt.settings.worker_metrics_port
        if not port:
            log.info("metrics endpoint off", port=0)
            return
        registry = metrics.scrape_registry(rt.client, exclude=(metrics.INGRESS_PREFIX,))
        intake = next((s for s in getattr(parent, "steps", ()) if isinstance(s, IntakeStep)),
                      None)
        healthy = None
        if intake is not None:
            registry.register(IntakeCollector(intake))
            healthy = intake.up
        try:
            bound, self._server, self._thread = serve_on_first_free_port(
                port, registry, healthy=healthy)
        except OSError as exc:
            log.warning("metrics endpoint not started: every port taken",
                        ports=f"{port}-{port + PORT_SPAN - 1}", error=str(exc))
            return
        log.info("metrics endpoint listening", port=bound, path="/metrics", health="/healthz")

    def stop(self, parent: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def shutdown(self, parent: Any) -> None:
        self.stop(parent)
