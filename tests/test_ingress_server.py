"""The ingress on its production server, as ``agora-callbacks web`` starts it: real
sockets, keep-alive, chunked bodies, start-up errors, shutdown on SIGTERM."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
from conftest import wait_for

from agora_callbacks import keys
from agora_callbacks.embedded_server import ServerProcess, free_port
from agora_callbacks.ingress.signature import sign_headers

SECRET = "server-secret"
LIMIT = 4096
BODY = (b'{"noticeId":"n-1","productId":3,"eventType":40,"notifyMs":1,'
        b'"payload":{"sid":"s-1","sequence":0,"cname":"caf\xc3\xa9","details":{}}}')


def _cli() -> str:
    return str(Path(sys.executable).parent / "agora-callbacks")


def _env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update({"REDIS_URL": redis_url, "AGORA_NCS_SECRETS": f"old,{SECRET}",
                "MAX_BODY_BYTES": str(LIMIT), "LOG_FORMAT": "json"})
    env.update(extra)
    return env


def _healthy(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def _spawn(env: dict[str, str], log_path: Path, port: int, *, workers: int = 1,
           threads: int | None = 2) -> subprocess.Popen[bytes]:
    """``agora-callbacks web`` with ``env``, ``workers`` processes of ``threads``
    threads (None: the default), its output in ``log_path``, in a process group of
    its own (stop it with ``_stop``)."""
    argv = [_cli(), "web", "--host", "127.0.0.1", "--port", str(port),
            "--workers", str(workers)]
    if threads is not None:
        argv += ["--threads", str(threads)]
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _spawn_web(redis_url: str, log_path: Path, port: int,
               **env: str) -> subprocess.Popen[bytes]:
    """``_spawn`` with this module's environment (``_env``): one worker process of
    two threads."""
    return _spawn(_env(redis_url, **env), log_path, port)


@contextlib.contextmanager
def serving(env: dict[str, str], log_path: Path, *, workers: int = 1,
            threads: int | None = 2) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``agora-callbacks web`` (``_spawn``) on a free port, once it answers
    ``/healthz``; stopped afterwards. Fails with its output if it exits first."""
    port = free_port()
    process = _spawn(env, log_path, port, workers=workers, threads=threads)
    try:
        wait_for(lambda: process.poll() is not None or _healthy(port), timeout=30,
                 message="agora-callbacks web to answer /healthz")
        assert process.poll() is None, log_path.read_text()
        yield process, port
    finally:
        _stop(process)


@pytest.fixture
def web(redis_server: ServerProcess, redis_client: redis.Redis,
        tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with serving(_env(redis_server.url), tmp_path / "web.log") as served:
        yield served


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (granian stops its workers), then SIGKILL to the whole process group:
    killing only the master would leave its worker processes running."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    if process.poll() is None:
        process.wait(10)


def _post(conn: http.client.HTTPConnection, body: bytes, chunked: bool = False,
          headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    sent = {"Content-Type": "application/json", **sign_headers(body, SECRET),
            **(headers or {})}
    if chunked:
        sent["Transfer-Encoding"] = "chunked"
        pieces = [body[i:i + 100] for i in range(0, len(body), 100)]
        # The server may answer 413 and close before the last chunk is sent: the
        # send then fails, and the answer is still there to read.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.request("POST", "/agora/ncs", body=iter(pieces), headers=sent,
                         encode_chunked=True)
    else:
        conn.request("POST", "/agora/ncs", body=body, headers=sent)
    response = conn.getresponse()
    response.read()
    return response


def _bodies(client: redis.Redis) -> list[bytes]:
    return [fields[b"body"] for _, fields in client.xrange(keys.INBOX)]  # type: ignore[union-attr]


def test_keep_alive_connection_stores_every_request(web: tuple[subprocess.Popen[bytes], int],
                                                    redis_client: redis.Redis) -> None:
    _, port = web
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        responses = [_post(conn, BODY + b" " * i) for i in range(5)]
    finally:
        conn.close()
    assert [r.status for r in responses] == [200] * 5
    assert all(r.getheader("Content-Type") == "application/json" for r in responses)
    assert _bodies(redis_client) == [BODY + b" " * i for i in range(5)]
    [(_, fields)] = redis_client.xrange(keys.INBOX, count=1)  # type: ignore[misc]
    assert fields[b"sig"] == b"v2" and fields[b"key"] == b"1" and fields[b"addr"] == b"127.0.0.1"


def test_chunked_body_within_the_limit_is_stored_exactly(
        web: tuple[subprocess.Popen[bytes], int], redis_client: redis.Redis) -> None:
    _, port = web
    body = b'{"pad":"' + "é".encode() * 1000 + b'"}\n'
    assert len(body) <= LIMIT
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        assert _post(conn, body, chunked=True).status == 200
    finally:
        conn.close()
    assert _bodies(redis_client) == [body]


def test_chunked_body_over_the_limit_is_413(web: tuple[subprocess.Popen[bytes], int],
                                           redis_client: redis.Redis) -> None:
    _, port = web
    body = b'{"pad":"' + b"x" * (2 * LIMIT) + b'"}'
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        assert _post(conn, body, chunked=True).status == 413
    finally:
        conn.close()
    assert redis_client.xlen(keys.INBOX) == 0


def test_content_length_over_the_limit_is_413_without_sending_the_body(
        web: tuple[subprocess.Popen[bytes], int], redis_client: redis.Redis) -> None:
    _, port = web
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.putrequest("POST", "/agora/ncs")
        conn.putheader("Content-Length", str(LIMIT * 100))
        for name, value in sign_headers(BODY, SECRET).items():
            conn.putheader(name, value)
        conn.endheaders()  # headers only: the server must answer without the body
        response = conn.getresponse()
        assert response.status == 413
    finally:
        conn.close()
    assert redis_client.xlen(keys.INBOX) == 0


def test_bad_signature_over_the_wire(web: tuple[subprocess.Popen[bytes], int],
                                     redis_client: redis.Redis) -> None:
    _, port = web
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        response = _post(conn, BODY, headers={"agora-signature-v2": "00" * 32})
    finally:
        conn.close()
    assert response.status == 401
    assert redis_client.xlen(keys.INBOX) == 0


def test_sigterm_stops_the_server_and_its_workers(
        web: tuple[subprocess.Popen[bytes], int]) -> None:
    process, port = web
    workers = psutil.Process(process.pid).children(recursive=True)
    assert workers, "granian runs its worker in a child process"
    process.send_signal(signal.SIGTERM)
    assert process.wait(40) == 0
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive, f"workers left running after SIGTERM: {alive}"
    assert not _healthy(port)


@pytest.mark.parametrize(("buffer_ms", "stop_first"), [("50", False), ("600000", True)])
def test_log_lines_reach_the_output_and_none_is_lost_at_sigterm(
        redis_server: ServerProcess, tmp_path: Path, buffer_ms: str, stop_first: bool) -> None:
    """With LOG_BUFFER_MS the worker writes info lines in batches: within the interval
    while it runs, and what is still buffered when SIGTERM stops it."""
    port = free_port()
    log_path = tmp_path / "web.log"
    process = _spawn_web(redis_server.url, log_path, port, LOG_BUFFER_MS=buffer_ms)
    try:
        wait_for(lambda: _healthy(port), timeout=30, message="the ingress up")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            assert [_post(conn, BODY).status for _ in range(3)] == [200] * 3
        finally:
            conn.close()
        if stop_first:
            process.send_signal(signal.SIGTERM)
            assert process.wait(40) == 0

        def stored_lines() -> list[str]:
            return [line for line in log_path.read_text().splitlines()
                    if '"ncs.stored"' in line]

        wait_for(lambda: len(stored_lines()) == 3, timeout=10,
                 message=f"3 ncs.stored lines with LOG_BUFFER_MS={buffer_ms}")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(40)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_refuses_to_start_without_a_secret(redis_server: ServerProcess) -> None:
    env = _env(redis_server.url, AGORA_NCS_SECRETS="")
    done = subprocess.run([_cli(), "web", "--port", str(free_port())], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "AGORA_NCS_SECRETS" in done.stderr


def test_bad_setting_is_named(redis_server: ServerProcess) -> None:
    env = _env(redis_server.url, WEB_THREADS="many")
    done = subprocess.run([_cli(), "web"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "WEB_THREADS" in done.stderr


def test_wsgi_interface_serves_the_same_ingress(redis_server: ServerProcess,
                                                redis_client: redis.Redis,
                                                tmp_path: Path) -> None:
    """``WEB_INTERFACE=wsgi``: the Flask app on granian's WSGI interface (no body
    deadline, for deployments behind a buffering proxy) stores what ``asgi`` does."""
    with serving(_env(redis_server.url, WEB_INTERFACE="wsgi"),
                 tmp_path / "web.log") as (process, port):
        # granian names its process after the interface and the app it serves.
        title = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert title.startswith(b"granian wsgi ") and b"ingress.wsgi:app" in title, title
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            statuses = [_post(conn, BODY + b" " * i).status for i in range(3)]
            chunked = _post(conn, BODY + b"\n", chunked=True).status
        finally:
            conn.close()
        assert statuses == [200] * 3 and chunked == 200
        assert _bodies(redis_client) == [BODY, BODY + b" ", BODY + b"  ", BODY + b"\n"]


def test_unknown_web_interface_is_named(redis_server: ServerProcess) -> None:
    env = _env(redis_server.url, WEB_INTERFACE="rsgi")
    done = subprocess.run([_cli(), "web"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0
    assert "WEB_INTERFACE" in done.stderr and "Traceback" not in done.stderr
