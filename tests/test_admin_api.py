"""``GET /recordings/<sid>``: closed without ADMIN_TOKEN, bearer token, JSON state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import redis
from conftest import wait_for
from flask.testing import FlaskClient
from structlog.testing import capture_logs

from agora_callbacks import keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress import admin
from agora_callbacks.ingress.app import create_app
from agora_callbacks.settings import Settings
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.record import new_record

TOKEN = "s3cret-admin-token"
SID = "0123456789abcdef0123456789abcdef"


def client_for(settings: Settings, token: str | None) -> FlaskClient:
    return create_app(dataclasses.replace(settings, admin_token=token)).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def stored(redis_client: redis.Redis) -> dict[str, Any]:
    record = new_record(SID)
    record["mode"] = "composite"
    store.save(redis_client, SID, record, ttl_s=60)
    return record


def test_closed_when_no_token_is_configured(settings: Settings,
                                            stored: dict[str, Any]) -> None:
    http = client_for(settings, None)
    for headers in ({}, bearer(""), bearer(TOKEN), {"Authorization": "Bearer"}):
        response = http.get(f"/recordings/{SID}", headers=headers)
        assert response.status_code == 404
        assert SID not in response.get_data(as_text=True)


def test_missing_or_wrong_token_is_401(settings: Settings, stored: dict[str, Any]) -> None:
    http = client_for(settings, TOKEN)
    for headers in ({}, bearer("wrong"), bearer(TOKEN + "x"), bearer(TOKEN[:-1]),
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": TOKEN}):
        response = http.get(f"/recordings/{SID}", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.get_json() == {"error": "unauthorized"}
    # Unknown sids answer 401 as well: nothing is learnt without the token.
    assert http.get("/recordings/unknown").status_code == 401


def test_right_token_reads_the_state(settings: Settings, stored: dict[str, Any]) -> None:
    http = client_for(settings, TOKEN)
    response = http.get(f"/recordings/{SID}", headers=bearer(TOKEN))
    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.get_json() == stored
    # The scheme is case-insensitive, surrounding spaces are ignored.
    assert http.get(f"/recordings/{SID}",
                    headers={"Authorization": f"bearer  {TOKEN} "}).status_code == 200


def test_unknown_sid_is_404(settings: Settings, redis_client: redis.Redis) -> None:
    http = client_for(settings, TOKEN)
    response = http.get("/recordings/feedfacefeedfacefeedfacefeedface", headers=bearer(TOKEN))
    assert response.status_code == 404
    assert response.get_json() == {"error": "not found"}


def test_expired_state_is_404(settings: Settings, redis_client: redis.Redis,
                              stored: dict[str, Any]) -> None:
    assert 0 < redis_client.ttl(keys.recording_state(SID)) <= 60
    redis_client.pexpire(keys.recording_state(SID), 1)
    http = client_for(settings, TOKEN)

    def gone() -> bool:
        return http.get(f"/recordings/{SID}", headers=bearer(TOKEN)).status_code == 404

    wait_for(gone, timeout=5, message="state expiry")


def test_redis_down_is_503(settings: Settings, redis_server: ServerProcess,
                           stored: dict[str, Any]) -> None:
    http = client_for(settings, TOKEN)
    redis_server.stop()
    response = http.get(f"/recordings/{SID}", headers=bearer(TOKEN))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(settings.retry_after_s)


def test_token_is_compared_in_constant_time(settings: Settings, stored: dict[str, Any],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = admin.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(admin.hmac, "compare_digest", spy)
    http = client_for(settings, TOKEN)
    assert http.get(f"/recordings/{SID}", headers=bearer("nope")).status_code == 401
    assert calls == [(b"nope", TOKEN.encode())]


@pytest.mark.parametrize(("raw", "said"), [
    (b"{not json", "not JSON"),
    (b"[1, 2]", "JSON, but an array, not an object"),
    (b'{"sid": "' + SID.encode() + b'"}', "no status field"),
    (b'{"sid": "' + SID.encode() + b'", "status": "recording"}',
     "status is a string, not an object"),
])
def test_a_corrupt_record_is_a_500_that_says_why(settings: Settings, redis_client: redis.Redis,
                                                 raw: bytes, said: str) -> None:
    redis_client.set(keys.recording_state(SID), raw)
    http = client_for(settings, TOKEN)
    with capture_logs() as logs:
        response = http.get(f"/recordings/{SID}", headers=bearer(TOKEN))
    assert response.status_code == 500
    error = response.get_json()["error"]
    assert error.startswith(f"the stored record cannot be read: {said}"), error
    lines = [line for line in logs if line["event"] == "admin.record_unreadable"]
    assert [line["sid"] for line in lines] == [SID]
    assert lines[0]["reason"].startswith(said)
