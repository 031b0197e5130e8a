"""Finding 13: clients that send headers and then stall must not hold the ingress's
request threads.

The server tests run the ingress as the README does (``agora-callbacks web``: granian's
ASGI interface, the Flask app on threads behind ``body_deadline``) with one worker of
two request threads, and hold more stalled connections than that (16) while a signed
callback is sent. A request without a signature header (or with none that could
verify) is refused with 401 before its body is read. Any other body is read on the
event loop, not on a request thread, within ``BODY_READ_TIMEOUT_S``: a stalled client
with a well-formed (forged) signature header holds a coroutine and its connection
until the deadline, then gets 408.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import wait_for
from test_ingress_server import BODY, SECRET, _bodies, _env, _post, serving
from werkzeug.test import EnvironBuilder, run_wsgi_app

from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.signature import HEADER_V1, HEADER_V2, sign_headers
from agora_callbacks.settings import Settings

#: Generous room for a loaded machine: the only timed assertion.
ANSWER_WITHIN_S = 10.0
STALLED = 16
FORGED = {HEADER_V2: "ab" * 32}  # well-formed, wrong: only the body can tell


#: ``BODY_READ_TIMEOUT_S`` of the servers that test the deadline itself.
DEADLINE_S = 1.0


def _serve(redis_server: ServerProcess, tmp_path: Path, **env: str) -> Iterator[int]:
    with serving(_env(redis_server.url, **env), tmp_path / "web.log") as (_, port):
        yield port


@pytest.fixture
def web(redis_server: ServerProcess, redis_client: redis.Redis,
        tmp_path: Path) -> Iterator[int]:
    """The ingress with the default deadline (10 s, the test's bound)."""
    yield from _serve(redis_server, tmp_path)


@pytest.fixture
def web_1s(redis_server: ServerProcess, redis_client: redis.Redis,
           tmp_path: Path) -> Iterator[int]:
    """The ingress with a body deadline of ``DEADLINE_S``."""
    yield from _serve(redis_server, tmp_path, BODY_READ_TIMEOUT_S=str(DEADLINE_S))


def _stall(port: int, headers: dict[str, str], *, chunked: bool = False) -> socket.socket:
    """A connection that sends a POST's headers and the start of its body, then
    nothing more: a ``Content-Length`` of 1000 and 20 bytes, or a chunked body's
    first chunk."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    lines = ["POST /agora/ncs HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json",
             "Transfer-Encoding: chunked" if chunked else "Content-Length: 1000",
             *(f"{name}: {value}" for name, value in headers.items())]
    start = b'{"noticeId":"stall",'
    first = b"%x\r\n%b\r\n" % (len(start), start) if chunked else start
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + first)
    return sock


def _status(sock: socket.socket, timeout: float) -> int:
    """The status of the response on ``sock``; fails when none comes within
    ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                pytest.fail(f"closed without a response: {data!r}")
            data += chunk
    except TimeoutError:
        pytest.fail(f"no response within {timeout}s")
    return int(data.split(b" ", 2)[1])


def _until_closed(sock: socket.socket, timeout: float) -> bytes:
    """All the server sends on ``sock`` until it closes it; fails when it does not
    close it within ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pytest.fail(f"not closed within {timeout}s; received {data[:80]!r}")
    return data


def _signed_callback_within(port: int, seconds: float) -> int:
    """POST a signed callback on a new connection; its status, which must come within
    ``seconds`` (a socket timeout fails the test)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=seconds)
    started = time.monotonic()
    try:
        status = _post(conn, BODY).status
    except TimeoutError:
        pytest.fail(f"the signed callback was not answered within {seconds}s")
    finally:
        conn.close()
    assert time.monotonic() - started < seconds
    return status


def _close_all(socks: list[socket.socket]) -> None:
    for sock in socks:
        sock.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_requests_without_a_signature_header_are_refused_before_their_body(
        web: int, redis_client: redis.Redis, chunked: bool) -> None:
    stalled = [_stall(web, {}, chunked=chunked) for _ in range(STALLED)]
    try:
        assert _signed_callback_within(web, ANSWER_WITHIN_S) == 200
        # 401 although the body never came (it was not waited for), then closed.
        answers = [_until_closed(sock, ANSWER_WITHIN_S) for sock in stalled]
    finally:
        _close_all(stalled)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"401"] * STALLED
    assert _bodies(redis_client) == [BODY]


def test_stalled_bodies_with_a_forged_signature_do_not_hold_the_request_threads(
        web: int, redis_client: redis.Redis) -> None:
    stalled = [_stall(web, FORGED) for _ in range(STALLED)]
    try:
        assert _signed_callback_within(web, ANSWER_WITHIN_S) == 200
    finally:
        _close_all(stalled)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_stalled_bodies_are_408_after_the_deadline(
        web_1s: int, redis_client: redis.Redis, tmp_path: Path, chunked: bool) -> None:
    started = time.monotonic()
    stalled = [_stall(web_1s, FORGED, chunked=chunked) for _ in range(STALLED)]
    try:
        assert _signed_callback_within(web_1s, ANSWER_WITHIN_S) == 200
        answers = [_until_closed(sock, ANSWER_WITHIN_S) for sock in stalled]
        elapsed = time.monotonic() - started
    finally:
        _close_all(stalled)
    assert [a.split(b" ", 2)[1] for a in answers] == [b"408"] * STALLED
    assert elapsed >= DEADLINE_S  # not before the deadline
    head, _, body = answers[0].partition(b"\r\n\r\n")
    assert json.loads(body) == {"error": "request body timeout"}
    assert b"x-request-id:" in head.lower()
    assert _bodies(redis_client) == [BODY]

    def timeouts_logged() -> int:
        lines = [json.loads(line) for line in (tmp_path / "web.log").read_text().splitlines()
                 if '"ncs.rejected"' in line]
        return sum(line["reason"] == "body_timeout" and line["status"] == 408
                   for line in lines)

    wait_for(lambda: timeouts_logged() == STALLED, timeout=10,
             message=f"{STALLED} ncs.rejected lines with reason body_timeout")


def test_a_trickled_chunked_body_within_the_deadline_is_stored(
        web_1s: int, redis_client: redis.Redis) -> None:
    """Five chunks a tenth of the deadline apart: slow, but complete in time."""
    headers = {"Content-Type": "application/json", **sign_headers(BODY, SECRET)}
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock = socket.create_connection(("127.0.0.1", web_1s), timeout=30)
    try:
        sock.sendall(f"POST /agora/ncs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     f"{head}\r\n".encode())
        size = -(-len(BODY) // 5)
        for start in range(0, len(BODY), size):
            piece = BODY[start:start + size]
            sock.sendall(b"%x\r\n%b\r\n" % (len(piece), piece))
            time.sleep(DEADLINE_S / 10)  # the client's pace, not a wait for the server
        sock.sendall(b"0\r\n\r\n")
        assert _status(sock, ANSWER_WITHIN_S) == 200
    finally:
        sock.close()
    wait_for(lambda: _bodies(redis_client) == [BODY], timeout=10, message="the body stored")


def test_a_body_sent_in_two_parts_is_stored(web: int, redis_client: redis.Redis) -> None:
    headers = {"Content-Type": "application/json", **sign_headers(BODY, SECRET)}
    sock = socket.create_connection(("127.0.0.1", web), timeout=30)
    try:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /agora/ncs HTTP/1.1\r\nHost: x\r\nContent-Length: {len(BODY)}\r\n"
                     f"{head}\r\n".encode() + BODY[:10])
        sock.sendall(BODY[10:])
        assert _status(sock, ANSWER_WITHIN_S) == 200
    finally:
        sock.close()
    wait_for(lambda: _bodies(redis_client) == [BODY], timeout=10, message="the body stored")


# --- in process ------------------------------------------------------------------


class _ExplodingStream(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer):  # type: ignore[no-untyped-def, override]
        raise AssertionError("the body was read")


@pytest.mark.parametrize(("headers", "require_v2"), [
    ({}, False),
    ({HEADER_V2: "not hex"}, False),
    ({HEADER_V1: "ab" * 19}, False),
    ({HEADER_V1: "ab" * 20}, True),
])
def test_headers_that_cannot_verify_are_401_without_reading(
        settings: Settings, redis_client: redis.Redis, headers: dict[str, str],
        require_v2: bool) -> None:
    settings = Settings.from_env({"REDIS_URL": settings.redis_url, "AGORA_NCS_SECRETS": "s",
                                  "AGORA_NCS_REQUIRE_V2": str(require_v2).lower()})
    app = create_app(settings)
    environ = EnvironBuilder(path="/agora/ncs", method="POST", data=b"x",
                             headers=headers).get_environ()
    environ["CONTENT_LENGTH"] = "100"
    environ["wsgi.input"] = _ExplodingStream()
    app_iter, status, _ = run_wsgi_app(app.wsgi_app, environ)
    assert status.startswith("401")
    assert json.loads(b"".join(app_iter)) == {"error": "unauthorized"}
