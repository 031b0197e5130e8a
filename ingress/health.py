"""Probes for load balancers: ``/healthz`` (the process answers) and ``/readyz``
(Redis answers too: a 503 takes the instance out of rotation while storage is down)."""

from __future__ import annotations

import redis
from flask import Blueprint, Response

from agora_callbacks.ingress import responses
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger

bp = Blueprint("health", __name__)
log = get_logger("ingress.health")


@bp.get("/healthz")
def healthz() -> Response:
    return Response(b'{"status":"ok"}', mimetype="application/json")


@bp.get("/readyz")
def readyz() -> Response:
    state = get_state()
    try:
        state.redis.ping()
    except (redis.RedisError, OSError) as exc:
        log.warning("readyz.redis_unavailable", error=type(exc).__name__)
        return responses.unavailable(state.retry_after)
    return Response(b'{"status":"ready"}', mimetype="application/json")
