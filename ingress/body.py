"""Reading a request body without ever holding more than the limit.

With a ``Content-Length`` the size is decided before a byte is read. Without one
(``Transfer-Encoding: chunked``), the WSGI server de-chunks and marks the stream as
terminated (``wsgi.input_terminated``, set by gunicorn, granian and Werkzeug's
server, and by ``wsgi_threads`` for a body ``body_deadline`` read whole); then at
most ``limit + 1`` bytes are read, which is enough to know the body is too large. A
stream the server does not terminate is never read blindly: it could block a worker
forever. The refusals (``BodyError``) are shared with ``body_deadline``, which makes
the same decisions on the event loop before the app runs.
"""

from __future__ import annotations

from typing import Any, BinaryIO

_CHUNK = 64 * 1024


class BodyError(Exception):
    """The body cannot be accepted; ``status`` is the HTTP status to answer, ``message``
    the error it names (``responses.error``), ``reason`` the log's and metrics' label."""

    status = 400
    reason = "bad_body"
    message = "bad request body"


class BodyTooLarge(BodyError):
    status = 413
    reason = "too_large"
    message = "body too large"


class BadContentLength(BodyError):
    reason = "bad_content_length"


class BodyIncomplete(BodyError):
    """The client sent fewer bytes than its ``Content-Length`` promised."""

    reason = "incomplete"


class BodyTimeout(BodyError):
    """The body was not complete within its deadline (``BODY_READ_TIMEOUT_S``)."""

    status = 408
    reason = "body_timeout"
    message = "request body timeout"


def parse_length(raw: str | None) -> int | None:
    """A ``Content-Length`` header's value, ``None`` when absent; ``BadContentLength``
    when it is not a non-negative integer."""
    if raw is None or raw == "":
        return None
    text = raw.strip()
    if not (text.isascii() and text.isdigit()):  # "²".isdigit(), int("²") fails
        raise BadContentLength()
    return int(text)


def declared_length(environ: dict[str, Any]) -> int | None:
    """The request's ``Content-Length`` (``parse_length``)."""
    raw = environ.get("CONTENT_LENGTH")
    return parse_length(None if raw is None else str(raw))


def check_declared_length(environ: dict[str, Any], limit: int) -> int | None:
    """Refuse a declared length over ``limit`` before anything is read."""
    length = declared_length(environ)
    if length is not None and length > limit:
        raise BodyTooLarge()
    return length


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = stream.read(min(remaining, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The raw request body, at most ``limit`` bytes, or a ``BodyError``."""
    length = check_declared_length(environ, limit)
    stream: BinaryIO = environ["wsgi.input"]
    if length is not None:
        body = _read_up_to(stream, length)
        if len(body) != length:
            raise BodyIncomplete()
        return body
    if not environ.get("wsgi.input_terminated"):
        return b""
    body = _read_up_to(stream, limit + 1)
    if len(body) > limit:
        raise BodyTooLarge()
    return body
