"""The ingress's WSGI app run on threads under an ASGI server: a2wsgi's
``WSGIMiddleware``, given only complete bodies (``body_deadline.BodyDeadline`` reads
each body before it hands the request over).

Threads: a2wsgi runs the WSGI app on a ``ThreadPoolExecutor`` of its own, its
``workers`` argument, one thread per request in flight; that is ``WEB_THREADS`` per
worker process. granian's ``--blocking-threads`` counts the threads of its WSGI
interface only: under ASGI its one blocking thread runs the event loop, and it
refuses more than 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

from a2wsgi import WSGIMiddleware

from agora_callbacks.ingress.asgi_types import ASGIApp

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def with_terminated_input(app: WSGIApp) -> WSGIApp:
    """``app`` told that ``wsgi.input`` ends where the body ends
    (``wsgi.input_terminated``): true of a body read whole before the app runs, and
    what ``body.read_body`` needs to read a chunked body (no ``Content-Length``)."""

    def app_with_terminated_input(environ: dict[str, Any],
                                  start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input_terminated"] = True
        return app(environ, start_response)

    return app_with_terminated_input


def on_threads(app: WSGIApp, threads: int) -> ASGIApp:
    """``app`` as an ASGI app that runs it on ``threads`` threads. (a2wsgi types its
    environ and messages as TypedDicts; the same dicts as ours.)"""
    return cast(ASGIApp, WSGIMiddleware(cast(Any, with_terminated_input(app)),
                                        workers=threads))
