"""The ingress over HTTP (Flask's test client), against the session's real Redis."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import time
from collections.abc import Iterator

import pytest
import redis
import structlog
from flask import Flask
from flask.testing import FlaskClient
from structlog.testing import capture_logs
from test_signature import BODY_A, BODY_C, VECTORS
from werkzeug.test import EnvironBuilder, run_wsgi_app

from agora_callbacks import inbox, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.errors import ConfigError
from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.signature import HEADER_V1, HEADER_V2, sign_headers
from agora_callbacks.settings import Settings

URL = "/agora/ncs"

RECORDING_BODY = (
    b'{"noticeId":"31aeb35a","notifyMs":1596555306283,"eventType":40,"sid":"d12f",'
    b'"payload":{"serviceType":1,"uid":"1001","sequence":1,"sendts":1596555306257,'
    b'"cname":"Testing2","details":{"status":0,"msgName":"recorder_started"},'
    b'"sid":"d12f"},"productId":3}'
)


def make_app(settings: Settings, **overrides: object) -> Flask:
    return create_app(dataclasses.replace(settings, **overrides))


@pytest.fixture
def app(settings: Settings, redis_client: redis.Redis) -> Flask:
    return make_app(settings)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def stored(client: redis.Redis) -> list[inbox.InboxEntry]:
    rows = client.xrange(keys.INBOX)
    return [inbox.InboxEntry.from_stream(eid, fields) for eid, fields in rows]  # type: ignore[union-attr]


def post(client: FlaskClient, body: bytes, headers: dict[str, str] | None = None,
         secret: str = "secret"):  # type: ignore[no-untyped-def]
    sent = dict(sign_headers(body, secret) if headers is None else headers)
    sent.setdefault("Content-Type", "application/json")
    return client.post(URL, data=body, headers=sent)


# --- accepted -------------------------------------------------------------------


@pytest.mark.parametrize(("body", "v1", "v2"), VECTORS)
@pytest.mark.parametrize("which", ["both", "v2", "v1"])
def test_vectors_are_stored_and_acknowledged(client: FlaskClient, redis_client: redis.Redis,
                                             body: bytes, v1: str, v2: str, which: str) -> None:
    headers = {"both": {HEADER_V2: v2, HEADER_V1: v1}, "v2": {HEADER_V2: v2},
               "v1": {HEADER_V1: v1}}[which]
    response = post(client, body, headers)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == {}
    [entry] = stored(redis_client)
    assert entry.body == body
    assert entry.meta.signature == ("v1" if which == "v1" else "v2")
    assert entry.meta.secret_index == 0
    assert entry.meta.remote_addr == "127.0.0.1"
    assert entry.meta.request_id == response.headers["X-Request-Id"]
    assert abs(entry.meta.received_ms - time.time() * 1000) < 60_000


def test_rotation_reports_which_secret(settings: Settings, redis_client: redis.Redis) -> None:
    app = make_app(settings, ncs_secrets=("old", "new"))
    with app.test_client() as c:
        assert post(c, RECORDING_BODY, secret="new").status_code == 200
        assert post(c, RECORDING_BODY, secret="old").status_code == 200
        assert post(c, RECORDING_BODY, secret="other").status_code == 401
    assert [e.meta.secret_index for e in stored(redis_client)] == [1, 0]


def test_lowercase_header_names(client: FlaskClient, redis_client: redis.Redis) -> None:
    headers = {k.lower(): v for k, v in sign_headers(RECORDING_BODY, "secret", v2=False).items()}
    assert post(client, RECORDING_BODY, headers).status_code == 200
    assert stored(redis_client)[0].meta.signature == "v1"


@pytest.mark.parametrize(
    "body",
    [
        b'  {"z": 1,   "a":\t[ 3 , 2 ,1 ],\r\n "eventType" : 40 }  \n\n',
        '{"cname":"café 会议 🎥","payload":{"b":2,"a":1}}'.encode(),
        b'{"uid":"\\u00e9\\ud83c\\udfa5","x":1.50e+3,"y":-0.0}',
        b'{"a":1}\x00\xff\xfe not utf-8',
    ],
    ids=["whitespace-and-key-order", "utf8", "escapes-and-numbers", "invalid-utf8"],
)
def test_stored_bytes_equal_sent_bytes(client: FlaskClient, redis_client: redis.Redis,
                                       body: bytes) -> None:
    assert post(client, body).status_code == 200
    [entry] = stored(redis_client)
    assert entry.body == body


def test_verified_non_json_body_is_stored(client: FlaskClient, redis_client: redis.Redis) -> None:
    body = b"this is not json {"
    response = post(client, body)
    assert response.status_code == 200
    assert [e.body for e in stored(redis_client)] == [body]


def test_body_at_the_limit_is_accepted(settings: Settings, redis_client: redis.Redis) -> None:
    app = make_app(settings, max_body_bytes=1000)
    body = b'{"pad":"' + b"x" * (1000 - 10) + b'"}'
    assert len(body) == 1000
    with app.test_client() as c:
        assert post(c, body).status_code == 200
    assert stored(redis_client)[0].body == body


# --- rejected -------------------------------------------------------------------


REJECTIONS = {
    "missing": {},
    "wrong-v2": {HEADER_V2: "ab" * 32},
    "wrong-v1": {HEADER_V1: "ab" * 20},
    "malformed": {HEADER_V2: "not-hex"},
    "wrong-secret": sign_headers(RECORDING_BODY, "not-the-secret"),
    "other-body": sign_headers(BODY_A, "secret"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_bad_signature_is_401_alike_and_nothing_stored(client: FlaskClient,
                                                      redis_client: redis.Redis,
                                                      case: str) -> None:
    with capture_logs() as logs:
        response = post(client, RECORDING_BODY, REJECTIONS[case])
    assert response.status_code == 401
    assert response.get_json() == {"error": "unauthorized"}
    assert redis_client.xlen(keys.INBOX) == 0
    rejected = [line for line in logs if line["event"] == "ncs.rejected"]
    assert len(rejected) == 1
    assert rejected[0]["reason"].startswith("signature_")
    assert "secret" not in json.dumps(rejected[0], default=str).replace("signature_", "")


def test_require_v2_refuses_v1_only(settings: Settings, redis_client: redis.Redis) -> None:
    app = make_app(settings, require_v2=True)
    with app.test_client() as c:
        assert post(c, BODY_C, sign_headers(BODY_C, "secret", v2=False)).status_code == 401
        assert post(c, BODY_C, sign_headers(BODY_C, "secret", v1=False)).status_code == 200
    assert redis_client.xlen(keys.INBOX) == 1


def test_body_over_the_limit_is_413(settings: Settings, redis_client: redis.Redis) -> None:
    app = make_app(settings, max_body_bytes=1000)
    body = b'{"pad":"' + b"x" * 1000 + b'"}'
    with app.test_client() as c:
        response = post(c, body)
    assert response.status_code == 413
    assert response.mimetype == "application/json"
    assert redis_client.xlen(keys.INBOX) == 0


class _ExplodingStream(io.RawIOBase):
    """A request body that fails the test if anyone reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer):  # type: ignore[no-untyped-def, override]
        raise AssertionError("the body was read although Content-Length was over the limit")


def test_413_is_decided_from_content_length_before_reading(app: Flask,
                                                          redis_client: redis.Redis) -> None:
    environ = EnvironBuilder(path=URL, method="POST", data=b"x",
                             headers=sign_headers(b"x", "secret")).get_environ()
    environ["CONTENT_LENGTH"] = str(10 * 1024 * 1024)
    environ["wsgi.input"] = _ExplodingStream()
    app_iter, status, _ = run_wsgi_app(app.wsgi_app, environ)
    assert status.startswith("413")
    assert json.loads(b"".join(app_iter)) == {"error": "body too large"}
    assert redis_client.xlen(keys.INBOX) == 0


@pytest.mark.parametrize("value", ["-1", "12abc", "1e3"])
def test_malformed_content_length_is_400(app: Flask, redis_client: redis.Redis,
                                        value: str) -> None:
    environ = EnvironBuilder(path=URL, method="POST", data=RECORDING_BODY,
                             headers=sign_headers(RECORDING_BODY, "secret")).get_environ()
    environ["CONTENT_LENGTH"] = value
    _, status, _ = run_wsgi_app(app.wsgi_app, environ)
    assert status.startswith("400")
    assert redis_client.xlen(keys.INBOX) == 0


def test_empty_body_is_400(client: FlaskClient, redis_client: redis.Redis) -> None:
    response = post(client, b"")
    assert response.status_code == 400
    assert response.get_json() == {"error": "empty body"}
    assert redis_client.xlen(keys.INBOX) == 0


def test_get_is_405_json(client: FlaskClient) -> None:
    response = client.get(URL)
    assert response.status_code == 405
    assert response.mimetype == "application/json"


# --- storage down ---------------------------------------------------------------


def test_storage_down_is_503_never_200_then_recovers(client: FlaskClient,
                                                    redis_server: ServerProcess) -> None:
    assert post(client, RECORDING_BODY).status_code == 200  # the pool holds a connection
    redis_server.stop()
    with capture_logs() as logs:
        statuses = [post(client, RECORDING_BODY) for _ in range(3)]
    for response in statuses:
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.mimetype == "application/json"
    assert [line["event"] for line in logs].count("ncs.storage_unavailable") == 3
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200
    redis_server.start()
    assert post(client, RECORDING_BODY).status_code == 200
    assert client.get("/readyz").status_code == 200
    check = redis.Redis.from_url(redis_server.url)
    try:
        assert [e.body for e in stored(check)] == [RECORDING_BODY]  # stop() lost the first
    finally:
        check.flushall()
        check.close()


def test_unresponsive_redis_times_out_fast(settings: Settings, redis_client: redis.Redis,
                                           redis_server: ServerProcess) -> None:
    app = make_app(settings, redis_timeout_s=0.3)
    assert redis_server.process is not None
    pid = redis_server.process.pid
    with app.test_client() as c:
        assert post(c, RECORDING_BODY).status_code == 200
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = post(c, RECORDING_BODY)
            elapsed = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert elapsed < 2.0, f"a paused Redis held the request for {elapsed:.2f}s"
        assert post(c, RECORDING_BODY).status_code == 200


# --- request id, probes, proxies, start-up --------------------------------------


def test_request_id_is_honoured_when_sane(client: FlaskClient, redis_client: redis.Redis) -> None:
    response = client.post(URL, data=RECORDING_BODY,
                           headers={**sign_headers(RECORDING_BODY, "secret"),
                                    "X-Request-Id": "lb-1234.abc"})
    assert response.headers["X-Request-Id"] == "lb-1234.abc"
    assert stored(redis_client)[0].meta.request_id == "lb-1234.abc"


@pytest.mark.parametrize("incoming", ["", "has space", "x" * 200, "<script>", "a\tb"])
def test_insane_request_id_is_replaced(client: FlaskClient, incoming: str) -> None:
    response = client.get("/healthz", headers={"X-Request-Id": incoming})
    rid = response.headers["X-Request-Id"]
    assert rid != incoming and len(rid) == 32


def test_request_id_is_on_every_log_line(client: FlaskClient, redis_client: redis.Redis) -> None:
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        response = post(client, RECORDING_BODY)
    lines = [line for line in logs if line["event"] == "ncs.stored"]
    assert len(lines) == 1
    assert lines[0]["request_id"] == response.headers["X-Request-Id"]
    assert lines[0]["signature"] == "v2" and lines[0]["bytes"] == len(RECORDING_BODY)
    assert "body" not in lines[0]


def test_probes(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json() == {"status": "ready"}


def test_trusted_proxy_hops(settings: Settings, redis_client: redis.Redis) -> None:
    forwarded = {"X-Forwarded-For": "203.0.113.7, 198.51.100.2"}
    for hops, expected in ((0, "127.0.0.1"), (1, "198.51.100.2"), (2, "203.0.113.7")):
        redis_client.delete(keys.INBOX)
        app = make_app(settings, trusted_proxy_hops=hops)
        with app.test_client() as c:
            headers = {**sign_headers(RECORDING_BODY, "secret"), **forwarded}
            assert c.post(URL, data=RECORDING_BODY, headers=headers).status_code == 200
        assert stored(redis_client)[0].meta.remote_addr == expected


def test_refuses_to_start_without_a_secret(settings: Settings) -> None:
    with pytest.raises(ConfigError, match=r"^AGORA_NCS_SECRETS"):
        make_app(settings, ncs_secrets=())
