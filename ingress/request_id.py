"""A request id on every request: the caller's ``X-Request-Id`` when it is sane, else a
new one; bound to structlog's contextvars for the request and echoed in the response.

A WSGI middleware rather than three Flask hooks: it wraps the whole app (error
pages included) and costs a fraction of the hooks' dispatch on the hot path. It is
the ingress's one such layer: whatever else must see every response (the metrics'
count and timing) registers an observer with ``observe`` instead of wrapping the app
again (each layer is a call and a ``start_response`` closure per request).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from flask import Flask

HEADER = "X-Request-Id"
ENVIRON_KEY = "agora_callbacks.request_id"
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")

#: Request ids need to be unique, not secret: a PRNG seeded from the OS (and seeded
#: again in each forked worker, so two workers never share a sequence) instead of an
#: ``os.urandom`` system call per request.
_random = random.Random()
os.register_at_fork(after_in_child=_random.seed)

_bind = structlog.contextvars.bind_contextvars
_clear = structlog.contextvars.clear_contextvars


def choose(incoming: str | None) -> str:
    """``incoming`` if it is 1-128 plain characters, else 32 fresh random hex digits."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return f"{_random.getrandbits(128):032x}"


#: Told of every response once the app returned it: the WSGI environ, the status
#: code ("200"; "500" if the app raised before starting a response) and the seconds
#: the app took.
Observer = Callable[[dict[str, Any], str, float], None]


class RequestIdMiddleware:
    """Choose the id, bind it for the request's log lines, echo it in the response,
    and tell the observers how the request ended."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.observers: list[Observer] = []

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        rid = choose(environ.get("HTTP_X_REQUEST_ID"))
        environ[ENVIRON_KEY] = rid
        _bind(request_id=rid)  # the thread's context is clean: every request clears it
        seen: list[str] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen.append(status[:3])
            headers.append((HEADER, rid))
            if exc_info is None:
                return start_response(status, headers)
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            _clear()
            if self.observers:
                seconds = time.perf_counter() - started
                status = seen[-1] if seen else "500"
                for observer in self.observers:
                    observer(environ, status, seconds)


def install(app: Flask) -> RequestIdMiddleware:
    """Wrap ``app`` in the middleware (once); return it."""
    layer = app.wsgi_app
    if not isinstance(layer, RequestIdMiddleware):
        layer = RequestIdMiddleware(app.wsgi_app)
        app.wsgi_app = layer  # type: ignore[method-assign]
    return layer


def observe(app: Flask, observer: Observer) -> None:
    """Have ``observer`` told of every response of ``app`` (installs the middleware if
    the app has not got it yet)."""
    install(app).observers.append(observer)
