"""JSON responses. NCS requires a JSON body on the 200; errors are JSON too, and never
say more than the status does (a 401 does not tell which check failed)."""

from __future__ import annotations

import json

from flask import Response

_JSON = "application/json"

OK_BODY = b"{}"


def ok() -> Response:
    return Response(OK_BODY, status=200, mimetype=_JSON)


def error_body(message: str) -> bytes:
    """The body of every error response: ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


def error(status: int, message: str, retry_after: str | None = None) -> Response:
    response = Response(error_body(message), status=status, mimetype=_JSON)
    if retry_after is not None:
        response.headers["Retry-After"] = retry_after
    return response


def unauthorized() -> Response:
    return error(401, "unauthorized")


def unavailable(retry_after: str) -> Response:
    return error(503, "storage unavailable, retry later", retry_after)
