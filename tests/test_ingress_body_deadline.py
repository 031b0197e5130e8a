"""The ASGI layer that reads each body before the WSGI app runs
(``agora_callbacks.ingress.body_deadline``), in process: a scripted client on one
side, a recording app on the other. Over real sockets: ``test_ingress_slow_body.py``."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from conftest import wait_for
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from agora_callbacks.ingress.body_deadline import BODY_KEY, BodyDeadline
from agora_callbacks.ingress.signature import HEADER_V2, sign_headers
from agora_callbacks.ingress.wsgi_threads import on_threads

LIMIT = 100
SIGNED = {HEADER_V2.lower(): "ab" * 32}  # well-formed: decided by the body


def scope(path: str = "/agora/ncs", method: str = "POST",
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "query_string": b"",
            "http_version": "1.1", "scheme": "http", "root_path": "",
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8080),
            "headers": [(k.lower().encode(), v.encode())
                        for k, v in {**SIGNED, **(headers or {})}.items()]}


class Client:
    """The server's side of one request: the messages ``receive`` gives, in order
    (``None``: wait for ever, a stalled client), and what the app sent."""

    def __init__(self, *messages: dict[str, Any] | None) -> None:
        self.messages = list(messages)
        self.received = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        if not self.messages:
            raise AssertionError("receive called after the last scripted message")
        message = self.messages.pop(0)
        self.received += 1
        if message is None:
            await asyncio.Event().wait()
        assert message is not None
        return message

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])

    @property
    def json(self) -> Any:
        return json.loads(b"".join(m.get("body", b"") for m in self.sent[1:]))


def part(body: bytes, more: bool = True) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


class RecordingApp:
    """The app behind the layer: reads the request's body through ``receive``,
    records it (and the body handed in the scope), answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.scope_bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any],
                       receive: Callable[[], Awaitable[dict[str, Any]]],
                       send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.bodies.append(body)
        self.scope_bodies.append(scope[BODY_KEY])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def run(client: Client, request: dict[str, Any], *, timeout_s: float = 5.0,
        app: RecordingApp | None = None) -> RecordingApp:
    app = app or RecordingApp()
    layer = BodyDeadline(app, limit=LIMIT, timeout_s=timeout_s, require_v2=False)
    asyncio.run(layer(request, client.receive, client.send))
    return app


def rejected(reason: str) -> float:
    return REGISTRY.get_sample_value("acb_ingress_rejected_total", {"reason": reason}) or 0.0


def test_a_body_in_parts_reaches_the_app_whole() -> None:
    client = Client(part(b'{"a":'), part(b"1"), part(b"}", more=False))
    app = run(client, scope(headers={"content-length": "7"}))
    assert app.bodies == app.scope_bodies == [b'{"a":1}']
    assert client.status == 200


def test_a_body_without_a_length_reaches_the_app_whole() -> None:
    client = Client(part(b"x" * 60), part(b"y" * 40), part(b"", more=False))
    app = run(client, scope(headers={"transfer-encoding": "chunked"}))
    assert app.bodies == [b"x" * 60 + b"y" * 40]  # exactly the limit: accepted


def responses(route: str, status: str) -> float:
    return REGISTRY.get_sample_value(
        "acb_ingress_responses_total", {"route": route, "status": status}) or 0.0


def test_a_stalled_body_is_408_after_the_deadline_and_never_reaches_the_app() -> None:
    before = rejected("body_timeout"), responses("/agora/ncs", "408")
    client = Client(part(b'{"noticeId":'), None)
    with capture_logs() as logs:
        app = run(client, scope(headers={"content-length": "50", "x-request-id": "r-408"}),
                  timeout_s=0.2)
    assert app.bodies == []
    assert client.status == 408
    assert client.json == {"error": "request body timeout"}
    assert client.headers[b"connection"] == b"close"
    assert client.headers[b"x-request-id"] == b"r-408"
    assert (rejected("body_timeout"), responses("/agora/ncs", "408")) == (
        before[0] + 1, before[1] + 1)
    [line] = [line for line in logs if line["event"] == "ncs.rejected"]
    assert line == {"event": "ncs.rejected", "log_level": "warning", "logger": "ingress.body",
                    "reason": "body_timeout",
                    "status": 408, "request_id": "r-408", "content_length": 50,
                    "received": 12}


def test_a_declared_length_over_the_limit_is_413_without_reading() -> None:
    client = Client()  # any receive fails the test
    app = run(client, scope(headers={"content-length": str(LIMIT + 1)}))
    assert (client.status, client.json) == (413, {"error": "body too large"})
    assert app.bodies == [] and client.received == 0


def test_a_bad_length_is_400_without_reading() -> None:
    client = Client()
    run(client, scope(headers={"content-length": "12x"}))
    assert (client.status, client.json) == (400, {"error": "bad request body"})


def test_a_body_without_a_length_is_413_as_soon_as_it_passes_the_limit() -> None:
    before = rejected("too_large")
    client = Client(part(b"x" * 60), part(b"y" * 41), part(b"never read"))
    app = run(client, scope(headers={"transfer-encoding": "chunked"}))
    assert client.status == 413
    assert client.received == 2 and app.bodies == []
    assert rejected("too_large") == before + 1


def test_a_client_gone_midway_is_refused_as_incomplete() -> None:
    before = rejected("incomplete")
    client = Client(part(b"x" * 10), {"type": "http.disconnect"})
    app = run(client, scope(headers={"content-length": "50"}))
    assert app.bodies == [] and client.status == 400
    assert rejected("incomplete") == before + 1


@pytest.mark.parametrize("headers", [{}, {HEADER_V2.lower(): "not hex"}], ids=["none", "malformed"])
def test_headers_that_cannot_verify_go_to_the_app_without_their_body(
        headers: dict[str, str]) -> None:
    """The route answers those 401 from their headers; nothing waits for the body."""
    client = Client()  # the stalled body is never asked for
    request = scope()
    request["headers"] = [(k.encode(), v.encode()) for k, v in
                          {"content-length": "50", **headers}.items()]
    app = run(client, request, timeout_s=0.01)
    assert app.bodies == app.scope_bodies == [b""] and client.status == 200


def test_other_routes_get_the_deadline_too_and_are_counted_by_status() -> None:
    before = responses("other", "408"), rejected("body_timeout")
    client = Client(part(b"user=", more=True), None)
    with capture_logs() as logs:
        run(client, scope("/ui/login", headers={"content-length": "40"}), timeout_s=0.05)
    assert client.status == 408
    assert (responses("other", "408"), rejected("body_timeout")) == (before[0] + 1, before[1])
    assert [(line["event"], line["path"]) for line in logs] == [
        ("request.rejected", "/ui/login")]


def test_lifespan_is_completed() -> None:
    client = Client({"type": "lifespan.startup"}, {"type": "lifespan.shutdown"})
    run(client, {"type": "lifespan"})
    assert [m["type"] for m in client.sent] == ["lifespan.startup.complete",
                                                "lifespan.shutdown.complete"]


def test_a_websocket_is_refused_and_an_unknown_scope_raises() -> None:
    client = Client()
    run(client, {"type": "websocket"})
    assert client.sent == [{"type": "websocket.close", "code": 1003}]
    with pytest.raises(ValueError, match="unsupported ASGI scope type 'telepathy'"):
        run(Client(), {"type": "telepathy"})


# --- the WSGI app on threads -------------------------------------------------------


def test_the_wsgi_app_gets_a_chunked_body_whole_and_terminated() -> None:
    seen: list[tuple[bytes, Any]] = []

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen.append((environ["wsgi.input"].read(), environ.get("wsgi.input_terminated")))
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    client = Client(part(b'{"a":'), part(b"1}", more=False))
    layer = BodyDeadline(on_threads(wsgi, 2), limit=LIMIT, timeout_s=5, require_v2=False)
    asyncio.run(layer(scope(headers={"transfer-encoding": "chunked"}), client.receive,
                      client.send))
    assert seen == [(b'{"a":1}', True)]
    assert client.status == 200


def test_the_wsgi_app_runs_on_as_many_threads_as_asked() -> None:
    threads = 3
    inside: list[int] = []
    release = threading.Event()
    lock = threading.Lock()

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with lock:
            inside.append(threading.get_ident())
        release.wait(30)
        start_response("200 OK", [])
        return [b""]

    async def main() -> list[int]:
        app = on_threads(wsgi, threads)
        clients = [Client(part(b"", more=False)) for _ in range(2 * threads)]
        tasks = [asyncio.create_task(app(scope(), c.receive, c.send)) for c in clients]
        await asyncio.to_thread(wait_for, lambda: len(inside) >= threads, 10,
                                message=f"{threads} requests in the app at once")
        release.set()
        await asyncio.gather(*tasks)
        return [c.status for c in clients]

    assert asyncio.run(main()) == [200] * (2 * threads)
    assert len(inside) == 2 * threads
    assert len(set(inside)) == threads  # all of them at once, and never more


def test_a_signed_body_reaches_the_ingress_route_through_the_layer(
        redis_client: Any, settings: Any) -> None:
    """The whole stack in process: layer, threads, the Flask app, Redis."""
    from agora_callbacks import keys
    from agora_callbacks.ingress.asgi_app import create_asgi_app

    body = b'{"noticeId":"n-asgi","payload":{}}'
    headers = {"content-type": "application/json",
               **{k.lower(): v for k, v in sign_headers(body, "secret").items()}}
    request = scope(headers=headers)
    request["headers"] = [(k.encode(), v.encode()) for k, v in headers.items()]
    client = Client(part(body[:10]), part(body[10:], more=False))
    asyncio.run(create_asgi_app(settings)(request, client.receive, client.send))
    assert client.status == 200 and client.json == {}
    [(_, fields)] = redis_client.xrange(keys.INBOX)
    assert fields[b"body"] == body


def test_the_layer_reads_signature_headers_as_the_route_does(
        redis_client: Any, settings: Any) -> None:
    """A WSGI environ names ``Agora_Signature_V2`` and ``Agora-Signature-V2`` alike
    (``HTTP_AGORA_SIGNATURE_V2``), so the route verifies either. The layer used to
    match names exactly: it took an underscore name for no signature and handed the
    request over without its body, and the route, which did see the signature,
    answered 400 for a body shorter than its ``Content-Length``."""
    from agora_callbacks import keys
    from agora_callbacks.ingress.asgi_app import create_asgi_app

    body = b'{"noticeId":"n-underscore","payload":{}}'
    signature = sign_headers(body, "secret", v1=False)[HEADER_V2]
    headers = {"content-type": "application/json", "content-length": str(len(body)),
               "agora_signature_v2": signature}
    request = scope()
    request["headers"] = [(k.encode(), v.encode()) for k, v in headers.items()]
    client = Client(part(body, more=False))
    asyncio.run(create_asgi_app(settings)(request, client.receive, client.send))
    assert client.status == 200 and client.json == {}
    [(_, fields)] = redis_client.xrange(keys.INBOX)
    assert fields[b"body"] == body
