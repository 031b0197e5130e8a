"""No secret and no body in any log line, across the paths that log a refusal or a
failure: every process's real output (the ingress on granian, a Celery worker, the
reconciler) is captured and searched for secrets planted in the settings and for
a marker planted in the bodies.

Planted: the NCS signing secret, ``ADMIN_TOKEN``, the password of ``REDIS_URL`` (a
Redis ACL user of the test's own), Agora's customer secret and the Basic
``Authorization`` value it makes, and ``MARKER`` in every body sent.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from conftest import wait_for
from fake_agora import APP_ID, CUSTOMER_ID, CUSTOMER_SECRET, Reply
from test_ingress_server import _env, serving

from agora_callbacks import deadletters, inbox, logs
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.signature import sign_headers
from agora_callbacks.reconcile import registration
from agora_callbacks.reconcile.run import Reconciler
from agora_callbacks.settings import Settings

NCS_SECRET = "PLANTED-ncs-secret-b7e41d"
ADMIN_TOKEN = "PLANTED-admin-token-b7e41d"
WRONG_TOKEN = "PLANTED-wrong-token-b7e41d"
REDIS_USER = "acb-logtest"
REDIS_PASSWORD = "PLANTED-redis-password-b7e41d"
BASIC = base64.b64encode(f"{CUSTOMER_ID}:{CUSTOMER_SECRET}".encode()).decode()
MARKER = "BODYMARKER-b7e41d"
#: What no line may contain (``CUSTOMER_SECRET`` is the fake API's, checked too).
SECRETS = (NCS_SECRET, ADMIN_TOKEN, WRONG_TOKEN, REDIS_PASSWORD, CUSTOMER_SECRET, BASIC)


def assert_clean(output: str) -> None:
    for secret in (*SECRETS, MARKER):
        lines = [line for line in output.splitlines() if secret in line]
        assert not lines, f"{secret!r} logged:\n" + "\n".join(lines)


def event_body(sid: str, sequence: int, notice: str) -> bytes:
    return json.dumps({
        "noticeId": notice, "productId": 3, "eventType": 40, "notifyMs": int(time.time() * 1000),
        "sid": sid, "payload": {"sid": sid, "sequence": sequence, "uid": "1001", "sendts": 1,
                                "serviceType": 1, "cname": MARKER,
                                "details": {"status": 0, "msgName": "recorder_started"}},
    }).encode()


def with_password(url: str) -> str:
    """``url`` (``redis://host:port/db``) as the test's ACL user."""
    return url.replace("redis://", f"redis://{REDIS_USER}:{REDIS_PASSWORD}@", 1)


@contextlib.contextmanager
def acl_user(client: redis.Redis) -> Iterator[None]:
    """A user of the server with ``REDIS_PASSWORD``, removed afterwards (the default
    user is left as it is)."""
    client.execute_command("ACL", "SETUSER", REDIS_USER, "on", f">{REDIS_PASSWORD}",
                           "~*", "&*", "+@all")
    try:
        yield
    finally:
        with contextlib.suppress(redis.RedisError):
            client.execute_command("ACL", "DELUSER", REDIS_USER)


# -- the ingress, on granian ------------------------------------------------------------


def _request(port: int, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_ingress_logs_no_secret_and_no_body(tmp_path: Path) -> None:
    """Refusals (wrong signature, oversized body, wrong admin token, a sign-in with a
    wrong token, a refused registration), a stored body, and Redis down (503): the
    ingress's and granian's lines, at debug level, carry none of the planted values.
    A server of the test's own, so that it can be stopped."""
    server = ServerProcess(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        with acl_user(client):
            env = _env(with_password(server.url), AGORA_NCS_SECRETS=NCS_SECRET,
                       ADMIN_TOKEN=ADMIN_TOKEN, LOG_LEVEL="debug", LOG_BUFFER_MS="0")
            log_path = tmp_path / "web.log"
            with serving(env, log_path) as (_, port):
                body = event_body("sid-web", 1, "n-web")
                signed = {**sign_headers(body, NCS_SECRET), "Content-Type": "application/json"}
                assert _request(port, "POST", "/agora/ncs", body, signed) == 200
                wrong = {**sign_headers(body, "not-the-secret"),
                         "Content-Type": "application/json"}
                assert _request(port, "POST", "/agora/ncs", body, wrong) == 401
                big = MARKER.encode() * 20_000
                assert _request(port, "POST", "/agora/ncs", big,
                                {**sign_headers(big, NCS_SECRET)}) == 413
                bearer = {"Authorization": f"Bearer {WRONG_TOKEN}"}
                assert _request(port, "GET", "/recordings/sid-web", headers=bearer) == 401
                assert _request(port, "GET", "/metrics", headers=bearer) == 401
                form = {"Content-Type": "application/x-www-form-urlencoded"}
                assert _request(port, "POST", "/ui/login", f"token={WRONG_TOKEN}".encode(),
                                form) in (400, 401)
                admin = {"Authorization": f"Bearer {ADMIN_TOKEN}",
                         "Content-Type": "application/json"}
                for refused in ({"resourceId": "r-1", "mode": MARKER},
                                {"resourceId": "r-1", "mode": "mix", MARKER: 1},
                                {"resourceId": f"r/{MARKER}", "mode": "mix"}):
                    assert _request(port, "POST", "/recordings/sid-web/resource",
                                    json.dumps(refused).encode(), admin) == 400
                server.stop()
                assert _request(port, "POST", "/agora/ncs", body, signed) == 503
                assert _request(port, "GET", "/readyz") == 503
                assert _request(port, "GET", "/recordings/sid-web", headers=admin) == 503
            output = log_path.read_text(errors="replace")
            if not server.running:
                server.start()
    finally:
        server.stop()
    for decision in ("ncs.stored", "ncs.rejected", "admin.unauthorized",
                     "admin.resource_refused", "ncs.storage_unavailable"):
        assert f'"{decision}"' in output, output
    assert_clean(output)


# -- a Celery worker ------------------------------------------------------------------


def test_the_worker_logs_no_secret_and_no_body(redis_client: redis.Redis,
                                               redis_server: ServerProcess,
                                               start_worker: Any) -> None:
    """A worker at info level (Celery's own lines included) with a password in its
    Redis URL: an event whose handlers succeed (one returns the event it was given)
    and fail (dead-lettered), a body that is not JSON and one that is not an event
    (both dead-lettered)."""
    with acl_user(redis_client):
        worker = start_worker("hygiene", handlers="log_hygiene_handlers", env={
            "REDIS_URL": with_password(redis_server.url),
            "LOG_LEVEL": "info", "AGORA_NCS_SECRETS": NCS_SECRET, "ADMIN_TOKEN": ADMIN_TOKEN})
        meta = inbox.ReceiveMeta(received_ms=int(time.time() * 1000), signature="v2",
                                 secret_index=0, remote_addr="127.0.0.1", request_id="r-1")
        inbox.store(redis_client, event_body("sid-worker", 1, "n-worker"), meta)
        inbox.store(redis_client, f"not JSON {MARKER}".encode(), meta)
        inbox.store(redis_client, json.dumps({"noticeId": MARKER, "eventType": MARKER,
                                              "payload": [MARKER]}).encode(), meta)
        wait_for(lambda: deadletters.count(redis_client) >= 3, message="3 dead letters")
        wait_for(lambda: "hygiene.keep[" in worker.log_path.read_text(errors="replace")
                 and "succeeded" in worker.log_path.read_text(errors="replace"),
                 message="Celery's line of the handler that succeeded")
        worker.stop()
    output = worker.log_path.read_text(errors="replace")
    for decision in ("invalid body dead-lettered", "handler failed, dead-lettered",
                     "handler done", "Connected to"):
        assert decision in output, output
    assert REDIS_USER in output  # Celery's "Connected to" line: the URL, masked
    assert_clean(output)


# -- reconciliation with a failing REST server --------------------------------------------


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """After the test (and after ``capfd``, requested after this one, put the streams
    back): logging configured as the process had it, on the streams later tests
    capture, instead of debug level on a capture that is closed by then (stdlib
    handlers bound to it print "Logging error" in every later test)."""
    yield
    logs.configure(os.environ.get("LOG_LEVEL", "info"), os.environ.get("LOG_FORMAT", "auto"),
                   force=True)


@pytest.fixture
def rendered(logging_restored: None, capfd: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """The process's real log output (structlog's and the libraries' lines, rendered
    as JSON at debug level): call the yielded function to read what was written."""
    logs.configure("debug", "json", force=True)

    def read() -> str:
        logs.flush()
        captured = capfd.readouterr()
        return captured.out + captured.err

    yield read


def test_reconciling_against_a_failing_server_logs_no_credentials(
        redis_server: ServerProcess, redis_client: redis.Redis, fake: Any,
        rendered: Any) -> None:
    """Agora (or a proxy in front of it) answering errors whose text echoes the
    request's credentials and more: the retry's and the final answer's lines carry
    neither the credentials nor the echoed text in full."""
    on = Settings.from_env({"REDIS_URL": redis_server.url, "AGORA_NCS_SECRETS": NCS_SECRET,
                            "LOG_FORMAT": "json", "AGORA_APP_ID": APP_ID,
                            "AGORA_CUSTOMER_ID": CUSTOMER_ID,
                            "AGORA_CUSTOMER_SECRET": CUSTOMER_SECRET,
                            "AGORA_REST_URL": fake.url})
    echo = (f"upstream failed for GET with Authorization: Basic {BASIC} "
            f"({CUSTOMER_ID}:{CUSTOMER_SECRET}) " + MARKER * 50)
    sid = "sid-reconcile"
    registration.save(redis_client, registration.validate(sid, "rid-1", "mix"), 60)
    fake.script(sid, Reply(503, {"code": 62, "reason": echo}),
                Reply(500, {"message": echo}), Reply(400, {"code": 2, "reason": echo}))
    reconciler = Reconciler(on, redis_client)
    try:
        first = reconciler.attempt(sid, "test")
        second = reconciler.attempt(sid, "test", first.progress)  # type: ignore[union-attr]
        reconciler.attempt(sid, "test", second.progress)  # type: ignore[union-attr]
    finally:
        reconciler.close()
    output = rendered()
    assert output.count('"reconcile.retry"') == 2 and '"reconcile.answer"' in output, output
    assert "upstream failed" in output  # the server's reason is still told...
    for secret in SECRETS:
        assert secret not in output, output
    # ... cut short: never the whole text (50 markers) in a line.
    assert max(line.count(MARKER) for line in output.splitlines()) < 10, output

