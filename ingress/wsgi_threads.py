"""The ingress's WSGI app run on threads under an ASGI server: a2wsgi's
``WSGIMiddleware``, given only complete bodies (``body_deadline.BodyDeadline`` reads
each body before it hands the request over).

a2wsgi's ``wsgi.input`` would fetch the body from the event loop (a thread hand-off
and back, measured at 50-100 µs of CPU on the project's 2-CPU machine); the body
``BodyDeadline`` read is in the ASGI scope already, which a2wsgi passes to the app as
``environ["asgi.scope"]``, so the app reads it from there.

Threads: a2wsgi runs the WSGI app on a ``ThreadPoolExecutor`` of its own, its
``workers`` argument, one thread per request in flight; that is ``WEB_THREADS`` per
worker process. granian's ``--blocking-threads`` counts the threads of its WSGI
interface only: under ASGI its one blocking thread runs the event loop, and it
refuses more than 1.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from typing import Any, cast

from a2wsgi import WSGIMiddleware

from agora_callbacks.ingress.asgi_types import ASGIApp
from agora_callbacks.ingress.body_deadline import BODY_KEY

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_complete_body(app: WSGIApp) -> WSGIApp:
    """``app`` reading the body ``BodyDeadline`` put in the scope (when it did), and
    told that ``wsgi.input`` ends where the body ends (``wsgi.input_terminated``: true
    of a2wsgi's own input too), which ``body.read_body`` needs to read a chunked body
    (no ``Content-Length``)."""

    def app_with_complete_body(environ: dict[str, Any],
                               start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["asgi.scope"].get(BODY_KEY)
        if body is not None:
            environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return app_with_complete_body


def on_threads(app: WSGIApp, threads: int) -> ASGIApp:
    """``app`` as an ASGI app that runs it on ``threads`` threads. (a2wsgi types its
    environ and messages as TypedDicts; the same dicts as ours.)"""
    return cast(ASGIApp, WSGIMiddleware(cast(Any, with_complete_body(app)),
                                        workers=threads))
