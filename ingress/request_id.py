"""A request id on every request: the caller's ``X-Request-Id`` when it is sane, else a
new one; bound to structlog's contextvars for the request and echoed in the response."""

from __future__ import annotations

import re
import uuid

import structlog
from flask import Flask, Response, g, request

HEADER = "X-Request-Id"
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")


def choose(incoming: str | None) -> str:
    """``incoming`` if it is 1-128 plain characters, else a fresh uuid4 hex."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current() -> str:
    value: str = g.get("request_id", "")
    return value


def _begin() -> None:
    rid = choose(request.headers.get(HEADER))
    g.request_id = rid
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=rid)


def _echo(response: Response) -> Response:
    rid = g.get("request_id")
    if rid:
        response.headers[HEADER] = rid
    return response


def _end(_exc: BaseException | None) -> None:
    structlog.contextvars.clear_contextvars()


def install(app: Flask) -> None:
    app.before_request(_begin)
    app.after_request(_echo)
    app.teardown_request(_end)
