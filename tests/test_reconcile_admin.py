"""``POST /recordings/<sid>/resource``: the registration of a recording's resourceId and
mode, behind ``ADMIN_TOKEN``; bad bodies answer 400 with the reason, Redis down 503."""

from __future__ import annotations

import dataclasses
import json

import pytest
import redis
from flask.testing import FlaskClient

from agora_callbacks import keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.ingress.app import create_app
from agora_callbacks.reconcile import registration
from agora_callbacks.settings import Settings

TOKEN = "s3cret-admin-token"
SID = "0123456789abcdef0123456789abcdef"
PATH = f"/recordings/{SID}/resource"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def client_for(settings: Settings, token: str | None) -> FlaskClient:
    return create_app(dataclasses.replace(settings, admin_token=token,
                                          agora_resource_ttl_s=3600)).test_client()


def test_registers_with_a_ttl(settings: Settings, redis_client: redis.Redis) -> None:
    http = client_for(settings, TOKEN)
    response = http.post(PATH, json={"resourceId": "rid-1", "mode": "web"}, headers=AUTH)
    assert response.status_code == 204
    assert registration.load(redis_client, SID) == registration.Registration(SID, "rid-1",
                                                                             "web")
    assert 3500 < redis_client.ttl(keys.recording_resource(SID)) <= 3600
    # Registering again replaces it.
    assert http.post(PATH, json={"resourceId": "rid-2", "mode": "mix"},
                     headers=AUTH).status_code == 204
    assert registration.load(redis_client, SID).resource_id == "rid-2"  # type: ignore[union-attr]


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "invalid JSON"),
    (b"\xff\xfe", "invalid JSON"),
    (b"[" * 5000, "body larger than"),
    (json.dumps(["rid", "mix"]).encode(), "JSON object"),
    (json.dumps({"resourceId": "rid"}).encode(), "mode must be one of individual, mix, web"),
    (json.dumps({"resourceId": "rid", "mode": "composite"}).encode(), "mode must be one of"),
    (json.dumps({"resourceId": "", "mode": "mix"}).encode(), "resourceId must be"),
    (json.dumps({"resourceId": "a/b", "mode": "mix"}).encode(), "resourceId may not"),
    (json.dumps({"resourceId": "r", "mode": "mix", "x": 1}).encode(), "unknown field(s): x"),
])
def test_bad_bodies_answer_400_with_the_reason(settings: Settings, redis_client: redis.Redis,
                                               body: bytes, reason: str) -> None:
    response = client_for(settings, TOKEN).post(
        PATH, data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == (413 if reason == "body larger than" else 400)
    assert reason in response.get_json()["error"]
    assert redis_client.get(keys.recording_resource(SID)) is None


def test_behind_the_admin_token(settings: Settings, redis_client: redis.Redis) -> None:
    body = {"resourceId": "rid", "mode": "mix"}
    assert client_for(settings, None).post(PATH, json=body, headers=AUTH).status_code == 404
    http = client_for(settings, TOKEN)
    assert http.post(PATH, json=body).status_code == 401
    assert http.post(PATH, json=body,
                     headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert redis_client.get(keys.recording_resource(SID)) is None


def test_redis_down_is_503(settings: Settings, redis_server: ServerProcess) -> None:
    http = client_for(settings, TOKEN)
    redis_server.stop()
    response = http.post(PATH, json={"resourceId": "rid", "mode": "mix"}, headers=AUTH)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(settings.retry_after_s)
