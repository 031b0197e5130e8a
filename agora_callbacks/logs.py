"""structlog, configured once per process.

JSON lines when stdout is not a terminal (production, CI, log shippers), readable
console output when it is. Context (``request_id`` at the ingress; ``sid``,
``sequence``, ``notice_id`` in the workers) is bound with ``bind_contextvars`` so
every line of one request or event carries it. Never log secrets or full bodies.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_configured = False
_generation = 0

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto", *, force: bool = False) -> None:
    """Configure structlog (and stdlib logging's level) once; later calls do nothing
    unless ``force`` is set."""
    global _configured, _generation
    if _configured and not force:
        return
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=_LEVELS.get(level, logging.INFO), stream=sys.stderr)
    _configured = True
    _generation += 1


class _NamedLogger:
    """A logger carrying ``logger=<name>``, bound on first use after each
    ``configure``: module-level loggers created at import time, before the
    process configured logging, still follow the configuration (binding a
    structlog proxy at import would freeze structlog's defaults into it)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: Any = None
        self._generation = -1

    def __getattr__(self, attr: str) -> Any:
        if self._generation != _generation:
            self._bound = structlog.get_logger(self._name).bind(logger=self._name)
            self._generation = _generation
        return getattr(self._bound, attr)


def get_logger(name: str) -> Any:
    """A structlog logger carrying ``logger=<name>`` on every line."""
    return _NamedLogger(name)
