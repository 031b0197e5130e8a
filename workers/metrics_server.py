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
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps, signals

from agora_callbacks import metrics, metrics_dir
from agora_callbacks.logs import get_logger
from workers import runtime

log = get_logger("workers.metrics_server")

#: How many ports, from ``WORKER_METRICS_PORT`` on, the workers of one host may take.
PORT_SPAN = 16


def serve_on_first_free_port(first: int, registry: Any, span: int = PORT_SPAN
                             ) -> tuple[int, Any, Any]:
    """Start prometheus_client's HTTP server on the first free port of
    ``first .. first + span - 1``; return (port, server, thread). Raises the last
    ``OSError`` when every port of the range is taken."""
    from prometheus_client import start_http_server

    error: OSError | None = None
    for port in range(first, first + span):
        try:
            server, thread = start_http_server(port, registry=registry)
        except OSError as exc:
            error = exc
            continue
        return port, server, thread
    assert error is not None
    raise error


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
        try:
            bound, self._server, self._thread = serve_on_first_free_port(
                port, metrics.scrape_registry(rt.client))
        except OSError as exc:
            log.warning("metrics endpoint not started: every port taken",
                        ports=f"{port}-{port + PORT_SPAN - 1}", error=str(exc))
            return
        log.info("metrics endpoint listening", port=bound, path="/metrics")

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
