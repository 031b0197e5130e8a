"""Read-only admin endpoints: ``GET /recordings/<sid>``, the folded state of a recording.

Behind a bearer token (``ADMIN_TOKEN``), compared in constant time:

- no token configured: 404 for every admin path, as if the endpoints did not
  exist (closed by default);
- token configured, ``Authorization: Bearer <token>`` missing or wrong: 401;
- right token, unknown (or expired) sid: 404; known sid: 200 with the JSON state;
- Redis unavailable: 503.
"""

from __future__ import annotations

import hmac

import redis
from flask import Blueprint, Response, abort, jsonify, request

from agora_callbacks.logs import get_logger
from agora_callbacks.settings import Settings
from workers.builtin import store

log = get_logger("ingress.admin")


def _bearer() -> bytes:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer":
        return b""
    return credentials.strip().encode("utf-8")


def token_matches(presented: bytes, expected: bytes) -> bool:
    """Constant-time comparison; an empty expected token never matches."""
    return bool(expected) and hmac.compare_digest(presented, expected)


def admin_blueprint(settings: Settings, client: redis.Redis) -> Blueprint:
    """The admin blueprint, reading states with ``client``."""
    blueprint = Blueprint("admin", __name__)
    expected = (settings.admin_token or "").encode("utf-8")

    @blueprint.before_request
    def _authorize() -> Response | None:
        if not expected:
            abort(404)
        if not token_matches(_bearer(), expected):
            log.info("admin_unauthorized", path=request.path)
            response = jsonify({"error": "unauthorized"})
            response.status_code = 401
            response.headers["WWW-Authenticate"] = 'Bearer realm="agora-callbacks admin"'
            return response
        return None

    @blueprint.get("/recordings/<sid>")
    def recording(sid: str) -> Response:
        try:
            state = store.load(client, sid)
        except redis.RedisError as exc:
            log.warning("admin_storage_unavailable", sid=sid, error=type(exc).__name__)
            response = jsonify({"error": "storage unavailable"})
            response.status_code = 503
            response.headers["Retry-After"] = str(settings.retry_after_s)
            return response
        if state is None:
            abort(404)
        return jsonify(state)

    return blueprint
