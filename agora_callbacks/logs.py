"""structlog, configured once per process.

JSON lines when stdout is not a terminal (production, CI, log shippers), readable
console output when it is. Context (``request_id`` at the ingress; ``sid``,
``sequence``, ``notice_id`` in the workers) is bound with ``bind_contextvars`` so
every line of one request or event carries it. Never log secrets or full bodies.

JSON lines go through a lean pipeline, because the ingress writes one per request
and its cost counts against every callback (``benchmarks/bench_ingress.py``): a
timestamp from a per-second cached prefix, one pre-built JSON encoder, and a
``LineWriter`` that writes straight to the file descriptor. With ``buffer_ms`` (the
ingress's ``LOG_BUFFER_MS``) debug and info lines are collected in memory and
written together at most that many milliseconds later by a background thread,
so a request does not pay a ``write`` (and the thread switch it invites) per line;
a warning or error is written at once, after everything buffered before it, so
order is kept and a problem is never held back.

The libraries' own lines (Celery, kombu, Flower and tornado, granian, Python's
warnings) go through the same renderer: ``configure`` puts a handler with
``stdlib_formatter`` (structlog's ``ProcessorFormatter``) on the stdlib root logger,
on stderr, so a JSON deployment prints JSON lines only. granian configures its
loggers itself, from ``GRANIAN_LOG_CONFIG`` (``agora-callbacks web`` passes it).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from agora_callbacks import forks

_configured = False
_generation = 0

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}

#: Buffered lines beyond which the logging thread writes them itself (backpressure
#: when stdout is slower than the lines come, instead of unbounded memory).
MAX_BUFFERED_LINES = 10_000

EventDict = MutableMapping[str, Any]

# -- processors -----------------------------------------------------------------------

_second_prefix: tuple[int, str] = (-1, "")


def timestamp_utc(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """``timestamp``: ISO 8601 UTC with microseconds, e.g. ``2026-11-24T21:41:00.270650Z``
    (the format of structlog's ``TimeStamper(fmt="iso", utc=True)``, at a fraction of
    its cost: the date and time up to the second are formatted once per second)."""
    global _second_prefix
    now = time.time()
    second = int(now)
    cached = _second_prefix
    if cached[0] != second:
        cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        _second_prefix = cached
    event_dict["timestamp"] = f"{cached[1]}.{int((now - second) * 1e6):06d}Z"
    return event_dict


def _fallback(obj: Any) -> Any:
    structlog_repr = getattr(obj, "__structlog__", None)
    return structlog_repr() if callable(structlog_repr) else repr(obj)


_ENCODER = json.JSONEncoder(default=_fallback)
# The C encoder ``_ENCODER`` builds afresh for every line, built once, without the
# circular-reference bookkeeping (a cycle ends in RecursionError, and the checking
# encoder then reports it as json.dumps would).
_C_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_FAST: Any = (_C_MAKE_ENCODER(None, _fallback, json.encoder.encode_basestring_ascii, None,
                              ": ", ", ", False, False, True)
              if _C_MAKE_ENCODER is not None else None)


def encode_json(value: Any) -> str:
    """``json.dumps(value, default=<repr fallback>)``, at two thirds of its cost: what
    ``structlog.processors.JSONRenderer`` gives, without an encoder built per line;
    unknown objects as their ``repr``."""
    if _FAST is not None:
        try:
            return "".join(_FAST(value, 0))
        except RecursionError:
            pass
    return _ENCODER.encode(value)


_add_level = structlog.processors.add_log_level
_stack_info = structlog.processors.StackInfoRenderer()
_exc_info = structlog.processors.format_exc_info


def json_line(logger: Any, method: str, event_dict: EventDict) -> str:
    """``add_log_level``, ``timestamp_utc``, ``StackInfoRenderer``, ``format_exc_info``
    and JSON rendering (``encode_json``) in one processor: the same line, one call instead of five
    (the stack and exception renderers run only when asked for)."""
    _add_level(logger, method, event_dict)
    timestamp_utc(logger, method, event_dict)
    if "stack_info" in event_dict:
        _stack_info(logger, method, event_dict)
    if "exc_info" in event_dict:
        _exc_info(logger, method, event_dict)
    return encode_json(event_dict)


# -- output ---------------------------------------------------------------------------


class LineWriter:
    """A structlog logger writing one rendered line per call to a file descriptor.

    ``buffer_s == 0``: each line is one ``os.write`` (then it is only a leaner
    ``PrintLogger``). ``buffer_s > 0``: debug and info
    lines wait in memory and a daemon thread writes them together at most ``buffer_s``
    later; warning and worse are written at once, after the lines before them. Safe
    across threads and ``fork`` (a child starts with an empty buffer and its own
    thread); buffered lines are written at interpreter exit and when a
    ``multiprocessing`` child (a granian worker) ends.
    """

    def __init__(self, fd: int, buffer_s: float = 0.0) -> None:
        self.fd = fd
        self.buffer_s = buffer_s
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._started = -1  # the fork generation whose flushing thread runs

    # structlog calls the method named like the level.
    def msg(self, message: str) -> None:
        if self.buffer_s <= 0:
            self._write([message])
            return
        self._lines.append(message)  # atomic; the flusher only removes what it wrote
        if self._started != forks.generation:
            self._start()
        if len(self._lines) > MAX_BUFFERED_LINES:
            self.flush()

    def urgent(self, message: str) -> None:
        """Write ``message`` now, after every line buffered before it."""
        if self.buffer_s <= 0:
            self._write([message])
            return
        self._lines.append(message)
        self.flush()

    debug = info = msg
    warning = error = critical = exception = fatal = failure = err = urgent
    log = msg

    def flush(self) -> None:
        """Write every buffered line (in order), in one ``write`` when it fits."""
        with self._lock:
            count = len(self._lines)
            if not count:
                return
            lines = self._lines[:count]
            del self._lines[:count]  # lines appended meanwhile stay for the next flush
            self._write(lines)

    def _write(self, lines: list[str]) -> None:
        data = ("\n".join(lines) + "\n").encode("utf-8", "replace")
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
        except OSError:
            pass  # stdout closed or gone: logging must never take the process down

    def _start(self) -> None:
        with self._lock:
            if self._started == forks.generation:
                return
            self._started = forks.generation
            threading.Thread(target=self._run, name="log-flush", daemon=True).start()
        atexit.register(self.flush)
        try:  # multiprocessing children end with os._exit: atexit never runs there
            from multiprocessing import util

            util.Finalize(None, self.flush, exitpriority=100)
        except Exception:  # pragma: no cover - multiprocessing is always there
            pass

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the process (forks do not copy it)
            time.sleep(self.buffer_s)
            if self._lines:
                self.flush()


def _after_fork_in_child() -> None:
    for writer in list(_writers.values()):
        del writer._lines[:]  # the parent writes its own lines
        writer._lock = threading.Lock()


_writers: dict[tuple[int, float], LineWriter] = {}
os.register_at_fork(after_in_child=_after_fork_in_child)


def line_writer(stream: TextIO, buffer_s: float = 0.0) -> LineWriter | None:
    """The process's ``LineWriter`` for ``stream``'s file descriptor, or ``None`` when
    the stream has none (a test's captured ``sys.stdout``)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    stream.flush()
    key = (fd, buffer_s)
    writer = _writers.get(key)
    if writer is None:
        writer = _writers[key] = LineWriter(fd, buffer_s)
    return writer


def flush() -> None:
    """Write every buffered log line now (before a planned exit, in tests)."""
    for writer in list(_writers.values()):
        writer.flush()


# -- configuration --------------------------------------------------------------------

#: The root logger's handler that ``configure`` installs (replaced on a forced call).
HANDLER_NAME = "agora_callbacks"
#: granian's ``--log-config``: its loggers through ``stdlib_formatter``.
GRANIAN_LOG_CONFIG = os.path.join(os.path.dirname(__file__), "granian_logging.json")


def _use_console(fmt: str) -> bool:
    return fmt == "console" or (fmt == "auto" and sys.stdout.isatty())


def _console_chain() -> list[Any]:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        structlog.dev.ConsoleRenderer(),
    ]


def stdlib_formatter(fmt: str | None = None) -> logging.Formatter:
    """A stdlib ``Formatter`` rendering a library's log record as this service's lines
    (the same JSON or console rendering, with ``logger`` = the record's logger name).
    ``fmt`` defaults to ``LOG_FORMAT`` (so a ``logging.config`` file can name it)."""
    chosen = fmt or os.environ.get("LOG_FORMAT", "auto").strip().lower() or "auto"
    render = _console_chain() if _use_console(chosen) else [json_line]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
    )


def _configure_stdlib(level: int, fmt: str) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(stdlib_formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # a library's warnings.warn(...) is a log line too


def configure(level: str = "info", fmt: str = "auto", *, buffer_ms: int = 0,
              force: bool = False) -> None:
    """Configure structlog (and stdlib logging's level) once; later calls do nothing
    unless ``force`` is set. ``buffer_ms`` > 0 buffers info lines that long at most
    (JSON output only; a terminal always gets every line at once)."""
    global _configured, _generation
    if _configured and not force:
        return
    use_console = _use_console(fmt)
    processors: list[Any] = [structlog.contextvars.merge_contextvars]
    logger_factory: Any
    processors += _console_chain() if use_console else [json_line]
    # Every line in one write(2) (LineWriter), never print()'s two (the text, then the
    # newline): with PYTHONUNBUFFERED (the Dockerfile sets it) each is a system call
    # of its own, and the processes sharing one stdout (Celery's pool, the intake)
    # would interleave their lines. Buffering is for JSON output only.
    writer = line_writer(sys.stdout, 0.0 if use_console else buffer_ms / 1000)
    logger_factory = (structlog.PrintLoggerFactory(file=sys.stdout) if writer is None
                      else _Always(writer))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )
    _configure_stdlib(_LEVELS.get(level, logging.INFO), fmt)
    _configured = True
    _generation += 1


class _Always:
    """A logger factory that always returns the same logger."""

    def __init__(self, logger: LineWriter) -> None:
        self.logger = logger

    def __call__(self, *_args: Any) -> LineWriter:
        return self.logger


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
