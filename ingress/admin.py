"""Read-only admin endpoints: ``GET /recordings/<sid>``, the folded state of a recording.

Behind a bearer token (``ADMIN_TOKEN``), compared in constant time:

- no token configured: 404 for every admin path, as if the endpoints did not
  exist (closed by default);
- token configured, ``Authorization: Bearer <token>`` missing or wrong: 401;
- right token, unknown (or expired) sid: 404; known sid: 200 with the JSON state;
- Redis unavailable: 503 with ``Retry-After``.
"""

from __future__ import annotations

import hmac

import redis
from flask import Blueprint, Response, jsonify, request

from agora_callbacks.ingress import responses
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger
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
        record = store.load(state.redis, sid)
    except (redis.RedisError, OSError) as exc:
        log.warning("admin.storage_unavailable", sid=sid, error=type(exc).__name__)
        return responses.unavailable(state.retry_after)
    if record is None:
        return responses.error(404, "not found")
    return jsonify(record)
