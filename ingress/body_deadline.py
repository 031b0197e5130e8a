"""A deadline on request bodies, in front of the WSGI app (finding 13).

On granian's WSGI interface a request thread reads the body itself, with no timeout
and no way to give up (granian issue #728): clients that send headers and stall
their body hold the request threads. This ASGI layer reads each body on the event
loop instead, where a wait holds a coroutine, not a thread, and can be abandoned;
the WSGI app runs on a thread (``wsgi_threads``) only once the body is in. Per HTTP
request, in order:

1. a ``POST`` to the NCS route whose signature headers cannot verify
   (``signature.check_headers``) goes to the app at once, its body unread: the
   route answers 401 from the headers;
2. a ``Content-Length`` that is not a number: 400; above ``MAX_BODY_BYTES``: 413;
   nothing read;
3. the body, read until complete for at most ``BODY_READ_TIMEOUT_S``: 408 when it
   is not complete by then; 413 as soon as a body without a length passes
   ``MAX_BODY_BYTES`` (no more than that is held); the client gone before the end:
   refused as incomplete (400, which it no longer sees);
4. the whole body goes to the app: through ``receive``, and in the scope
   (``BODY_KEY``), where the app can take it without a call back to the event loop.

Its refusals look like the app's: the JSON error of ``responses.error_body``, an
``X-Request-Id``, one ``ncs.rejected`` log line on the NCS route (``request.rejected``
on another route), the response counted and timed by route and status
(``acb_ingress_responses``, ``acb_ingress_request_duration_seconds``) and, on the NCS
route, its own counters (``acb_ingress_received``, ``acb_ingress_rejected`` by
reason). The response closes the connection: the rest of the body is never read.
Nothing of a body is logged.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agora_callbacks import metrics
from agora_callbacks.ingress import request_id, responses
from agora_callbacks.ingress.asgi_types import ASGIApp, Message, Receive, Scope, Send
from agora_callbacks.ingress.body import (
    BodyError,
    BodyIncomplete,
    BodyTimeout,
    BodyTooLarge,
    parse_length,
)
from agora_callbacks.ingress.metrics_endpoint import route_of
from agora_callbacks.ingress.routes import PATH
from agora_callbacks.ingress.signature import check_headers
from agora_callbacks.logs import get_logger

log = get_logger("ingress.body")

#: The scope key of the complete body handed to the app (bytes; ``b""`` when the
#: app refuses the request from its headers).
BODY_KEY = "agora_callbacks.body"

_ERROR_HEADERS = [(b"content-type", b"application/json"), (b"connection", b"close")]


def _header(scope: Scope, name: bytes) -> str | None:
    """The value of the request header ``name`` (lowercase, as ASGI gives names)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cannot_verify(scope: Scope, require_v2: bool) -> bool:
    """Whether the NCS route refuses this request from its signature headers alone.
    Header names are read as the route's WSGI environ reads them, ``_`` as ``-``
    (``Agora_Signature_V2`` and ``Agora-Signature-V2`` are both
    ``HTTP_AGORA_SIGNATURE_V2``), so the two never disagree."""
    headers = {key.decode("latin-1").replace("_", "-"): value.decode("latin-1")
               for key, value in scope["headers"]}
    return check_headers(headers, require_v2) is not None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` whole, then waits for what the server says
    next (the client's disconnect)."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


class BodyDeadline:
    """The ASGI app: ``app`` (an ASGI app, the WSGI app on threads) given each request
    with its body complete, read within ``timeout_s`` and at most ``limit`` bytes."""

    def __init__(self, app: ASGIApp, *, limit: int, timeout_s: float,
                 require_v2: bool) -> None:
        self.app = app
        self.limit = limit
        self.timeout_s = timeout_s
        self.require_v2 = require_v2

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":  # granian runs with --no-ws: refused if it ever came
            await send({"type": "websocket.close", "code": 1003})
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """Nothing to start or stop: the app is built at import, its threads on demand."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["method"] == "POST" and scope["path"] == PATH
                and _cannot_verify(scope, self.require_v2)):
            scope[BODY_KEY] = b""
            await self.app(scope, _replay(b"", receive), send)
            return
        started = time.perf_counter()
        received = 0
        length: int | None = None
        try:
            length = parse_length(_header(scope, b"content-length"))
            if length is not None and length > self.limit:
                raise BodyTooLarge()
            parts: list[bytes] = []
            try:
                async with asyncio.timeout(self.timeout_s):
                    while True:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            raise BodyIncomplete()
                        chunk = message.get("body", b"")
                        received += len(chunk)
                        if received > self.limit:
                            raise BodyTooLarge()
                        if chunk:
                            parts.append(chunk)
                        if not message.get("more_body", False):
                            break
            except TimeoutError:
                raise BodyTimeout() from None
        except BodyError as refused:
            await self._refuse(scope, send, refused, length, received, started)
            return
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        scope[BODY_KEY] = body
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, scope: Scope, send: Send, refused: BodyError,
                      length: int | None, received: int, started: float) -> None:
        path = scope["path"]
        route = route_of(path)
        rid = request_id.choose(_header(scope, b"x-request-id"))
        fields: dict[str, Any] = {
            "reason": refused.reason, "status": refused.status, "request_id": rid,
            "content_length": length, "received": received}
        metrics.INGRESS_RESPONSES.labels(route, str(refused.status)).inc()
        metrics.INGRESS_DURATION.labels(route).observe(time.perf_counter() - started)
        if path == PATH:
            metrics.INGRESS_RECEIVED.inc()
            metrics.INGRESS_REJECTED.labels(refused.reason).inc()
            log.warning("ncs.rejected", **fields)
        else:
            log.warning("request.rejected", method=scope["method"], path=path, **fields)
        await send({"type": "http.response.start", "status": refused.status,
                    "headers": [*_ERROR_HEADERS, (request_id.HEADER.lower().encode(),
                                                  rid.encode())]})
        await send({"type": "http.response.body",
                    "body": responses.error_body(refused.message)})
