"""Admin endpoints: ``GET /recordings/<sid>``, the folded state of a recording, and
``POST /recordings/<sid>/resource``, the registration of its ``resourceId`` and mode for
reconciliation with Agora's ``query`` (``agora_callbacks.reconcile``: 204 when stored,
400 with the reason for a body that is not ``{"resourceId": ..., "mode": ...}``).

Behind a bearer token (``ADMIN_TOKEN``), compared in constant time:

- no token configured: 404 for every admin path, as if the endpoints did not
  exist (closed by default);
- token configured, ``Authorization: Bearer <token>`` missing or wrong: 401;
- right token, unknown (or expired) sid: 404; known sid: 200 with the JSON state;
  a stored value that is not a record (not JSON, not an object, a field of another
  type: ``store.shape_problem``): 500 ``{"error": "the stored record cannot be read:
  <why>"}``, logged as ``admin.record_unreadable``;
- Redis unavailable: 503 with ``Retry-After``.
"""

from __future__ import annotations

import hmac
import json

import redis
from flask import Blueprint, Response, jsonify, request

from agora_callbacks.ingress import responses
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger
from agora_callbacks.reconcile import registration
from agora_callbacks.workers.builtin import store

bp = Blueprint("admin", __name__)
log = get_logger("ingress.admin")


def bearer_token() -> bytes:
    """The credentials of an ``Authorization: Bearer ...`` header, or b''."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return credentials.strip().encode("utf-8")


def token_matches(presented: bytes, expected: bytes) -> bool:
    """Constant-time comparison; an empty expected token never matches."""
    return bool(expected) and hmac.compare_digest(presented, expected)


@bp.before_request
def _authorize() -> Response | None:
    expected = (get_state().settings.admin_token or "").encode("utf-8")
    if not expected:
        return responses.error(404, "not found")
    if not token_matches(bearer_token(), expected):
        log.info("admin.unauthorized", path=request.path)
        response = responses.unauthorized()
        response.headers["WWW-Authenticate"] = 'Bearer realm="agora-callbacks admin"'
        return response
    return None


@bp.get("/recordings/<sid>")
def recording(sid: str) -> Response:
    state = get_state()
    try:
        record = store.load_checked(state.redis, sid)
    except (redis.RedisError, OSError) as exc:
        log.warning("admin.storage_unavailable", sid=sid, error=type(exc).__name__)
        return responses.unavailable(state.retry_after)
    except store.UnreadableRecord as exc:
        log.error("admin.record_unreadable", sid=sid, reason=str(exc))
        return responses.error(500, f"the stored record cannot be read: {exc}")
    if record is None:
        return responses.error(404, "not found")
    return jsonify(record)


@bp.post("/recordings/<sid>/resource")
def register_resource(sid: str) -> Response:
    state = get_state()
    if (request.content_length or 0) > registration.MAX_BODY_BYTES:
        log.info("admin.resource_refused", sid=sid, reason="body too large")
        return responses.error(413, f"body larger than {registration.MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(request.get_data(cache=False).decode("utf-8"))
        entry = registration.from_request(sid, body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        log.info("admin.resource_refused", sid=sid, reason="invalid JSON")
        return responses.error(400, 'invalid JSON: expected {"resourceId": ..., "mode": ...}')
    except registration.InvalidRegistration as exc:
        log.info("admin.resource_refused", sid=sid, reason=exc.logged)
        return responses.error(400, str(exc))
    try:
        registration.save(state.redis, entry, state.settings.agora_resource_ttl_s)
    except (redis.RedisError, OSError) as exc:
        log.warning("admin.storage_unavailable", sid=sid, error=type(exc).__name__)
        return responses.unavailable(state.retry_after)
    log.info("admin.resource_registered", sid=entry.sid, mode=entry.mode)
    return Response(status=204)
