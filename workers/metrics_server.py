"""The worker's Prometheus scrape endpoint: ``/metrics`` on ``WORKER_METRICS_PORT``.

- When the worker starts (Celery's ``celeryd_init``, in the main process before
  the prefork pool forks), metrics switch to multi-process mode unless the
  process was started in it, so the handler runs of every pool child are counted;
- ``MetricsServerStep``, a bootstep of the worker, serves this worker's metrics
  and the pipeline-wide figures read from Redis (``agora_callbacks.metrics``) from
  a thread of the main process, and stops with the worker. A port already taken
  (a second worker on the same host) is logged and skipped, never fatal.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps, signals

from agora_callbacks import metrics, metrics_dir
from agora_callbacks.logs import get_logger
from workers import runtime

log = get_logger("workers.metrics_server")


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
        from prometheus_client import start_http_server

        rt = runtime.get()
        port = rt.settings.worker_metrics_port
        if not port:
            log.info("metrics endpoint off", port=0)
            return
        try:
            self._server, self._thread = start_http_server(
                port, registry=metrics.scrape_registry(rt.client))
        except OSError as exc:
            log.warning("metrics endpoint not started", port=port, error=str(exc))
            return
        log.info("metrics endpoint listening", port=port, path="/metrics")

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
