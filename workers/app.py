"""The Celery app of the workers: ``celery -A agora_callbacks.workers.app:celery_app worker``.

The app itself is built in ``workers.application`` (what registering a handler
imports, with no side effects on the process). Importing this module makes the
process the service's worker (or Flower, or a ``celery`` command on this app): it
configures logging in the service's format, connects the Celery signal receivers
that put Celery's own output in that format, adds the worker's steps (the intake,
the metrics endpoint) and imports the handler modules when the worker starts
(``CALLBACK_HANDLERS`` and the ``agora_callbacks.handlers`` entry-point group).
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from celery import signals

from agora_callbacks import logs
from agora_callbacks.errors import ConfigError
from agora_callbacks.settings import Settings
from agora_callbacks.workers import handler_modules, hooks, runtime

# Its signal receivers put Celery's own output (log records, banner, shutdown
# notice) in the service's log format.
from agora_callbacks.workers import worker_logging as worker_logging

try:
    from agora_callbacks.workers.application import (
        amqp_config as amqp_config,
    )
    from agora_callbacks.workers.application import (
        celery_app,
        create_app,
    )
    from agora_callbacks.workers.application import (
        celery_config as celery_config,
    )
    from agora_callbacks.workers.application import (
        redis_config as redis_config,
    )
except ConfigError as exc:
    # One line naming the setting, also when the worker (or Flower) is started by
    # `celery` itself: the app is built when it is imported.
    raise SystemExit(f"Error: {exc}") from None
from agora_callbacks.workers.bootstep import IntakeStep
from agora_callbacks.workers.metrics_server import MetricsServerStep

__all__ = ["app", "celery_app", "celery_config", "create_app", "load_handlers"]

ENTRY_POINT_GROUP = handler_modules.ENTRY_POINT_GROUP

#: Handler modules that ship with the service, loaded in every worker. None since
#: the record is folded in the turn path (``workers.builtin.lifecycle``), which
#: ``BUILTIN_HANDLERS`` still turns on and off.
BUILTIN_HANDLERS: tuple[str, ...] = ()


def handler_module_names(settings: Settings) -> list[str]:
    """The built-in handler modules, then those named by ``CALLBACK_HANDLERS``
    (entry points are loaded separately)."""
    builtin = BUILTIN_HANDLERS if settings.builtin_handlers else ()
    return [*builtin, *settings.callback_handlers]


def load_handlers(settings: Settings) -> list[str]:
    """Import every handler module, the current directory first on the path (as
    ``celery -A`` does); return what was loaded. Raises
    ``handler_modules.HandlerImportError`` (one line) when one cannot be imported."""
    sources = [*handler_modules.from_variable(handler_module_names(settings)),
               *handler_modules.from_entry_points(entry_points(group=ENTRY_POINT_GROUP))]
    loaded = handler_modules.import_all(sources, celery_app.loader.import_from_cwd)
    hooks.STATE.loaded = True  # every @on_recording hook of the deployment is known
    return loaded



_settings = runtime.get_settings()
logs.configure(_settings.log_level, _settings.log_format)
celery_app.steps["worker"].add(IntakeStep)
celery_app.steps["worker"].add(MetricsServerStep)
app = celery_app


@signals.import_modules.connect
def _import_handlers(sender: Any = None, **kwargs: Any) -> None:
    if sender is not None and sender is not celery_app:
        return  # another app's worker in this process: not ours to load handlers for
    try:
        loaded = load_handlers(runtime.get().settings)
    except handler_modules.HandlerImportError as exc:
        # One line and exit status 1, also under plain `celery worker` (a SystemExit
        # is not caught and logged by Celery's signal dispatch, as an error is).
        raise SystemExit(f"Error: {exc}") from None
    logs.get_logger("workers.app").info("handler modules loaded", modules=loaded)
