"""The worker's output in the service's log format only (``agora_callbacks.logs``).

Celery writes three kinds of output of its own; each is taken over through a
public signal:

- its log records (``celery.*``, ``kombu.*``): ``setup_logging`` has a receiver,
  so Celery leaves logging alone (no handler of its own on the root logger or on
  ``celery.task``, in the main process or the pool's); ``logs.configure`` already
  sent every record through the service's renderer;
- the start banner, printed on stdout: ``celeryd_after_setup`` (sent just before
  it) sets the worker's ``quiet`` and logs its facts as one line instead;
- ``worker: Warm shutdown (MainProcess)``, printed by its SIGTERM handler:
  ``worker_ready`` installs the same handler (``celery.apps.worker``'s
  ``install_worker_term_handler``) with ``verbose=False``, and
  ``worker_shutting_down`` logs the shutdown instead.
"""

from __future__ import annotations

from typing import Any

from celery import signals
from celery.apps.worker import install_worker_term_handler

from agora_callbacks.logs import get_logger

log = get_logger("workers.worker")


@signals.setup_logging.connect
def _logging_is_ours(**kwargs: Any) -> None:
    """Configured by ``agora_callbacks.logs`` when the app was created."""


@signals.celeryd_after_setup.connect
def _banner_as_a_line(sender: Any = None, instance: Any = None, **kwargs: Any) -> None:
    if instance is None:
        return
    instance.quiet = True
    app = instance.app
    log.info("worker starting", node=sender, pool=getattr(instance.pool_cls, "__module__", None),
             concurrency=instance.concurrency,
             queues=sorted(app.amqp.queues.keys()),
             tasks=sorted(name for name in app.tasks if not name.startswith("celery.")))


@signals.worker_ready.connect
def _quiet_term_handler(sender: Any = None, **kwargs: Any) -> None:
    worker = getattr(sender, "controller", None)
    if worker is not None:
        install_worker_term_handler(worker, verbose=False)


@signals.worker_shutting_down.connect
def _log_shutdown(sender: Any = None, sig: Any = None, how: Any = None, **kwargs: Any) -> None:
    log.info("worker shutting down", node=sender, signal=sig, how=how)
