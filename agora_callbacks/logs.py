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

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}


def configure(level: str = "info", fmt: str = "auto", *, force: bool = False) -> None:
    """Configure structlog (and stdlib logging's level) once; later calls do nothing
    unless ``force`` is set."""
    global _configured
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


def get_logger(name: str) -> Any:
    """A structlog logger carrying ``logger=<name>`` on every line."""
    return structlog.get_logger(name).bind(logger=name)
