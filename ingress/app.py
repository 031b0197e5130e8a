"""The Flask app factory of the ingress.

``create_app`` builds the settings (once, from the environment, unless given),
refuses to start without an NCS secret, configures logging, and registers the
blueprints listed in ``BLUEPRINTS``: add ``"module:attribute"`` there (admin,
metrics) to extend the app without touching the factory.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

import redis
from flask import Blueprint, Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from agora_callbacks import logs
from agora_callbacks.ingress import request_id, responses
from agora_callbacks.ingress.state import EXTENSION, build_state
from agora_callbacks.settings import Settings

#: Blueprints of the app, as "module:attribute", registered in this order.
BLUEPRINTS: list[str] = [
    "agora_callbacks.ingress.health:bp",
    "agora_callbacks.ingress.routes:bp",
    "agora_callbacks.ingress.admin:bp",
    "agora_callbacks.ingress.metrics_endpoint:bp",
    "agora_callbacks.ingress.dashboard:bp",
]

log = logs.get_logger("ingress.app")


def _load(target: str) -> Blueprint:
    module_name, _, attr = target.partition(":")
    blueprint: Blueprint = getattr(importlib.import_module(module_name), attr)
    return blueprint


def _http_error(exc: HTTPException) -> Response:
    return responses.error(exc.code or 500, (exc.name or "error").lower())


def _unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    log.exception("ingress.unexpected_error", error=type(exc).__name__)
    return responses.error(500, "internal error")


def create_app(settings: Settings | None = None, *, redis_client: redis.Redis | None = None,
               blueprints: Iterable[str] | None = None) -> Flask:
    """The ingress WSGI app. Raises ``ConfigError`` (naming the variable) on bad settings
    or when ``AGORA_NCS_SECRETS`` is empty."""
    settings = settings if settings is not None else Settings.from_env()
    settings.require_secrets()
    logs.configure(settings.log_level, settings.log_format, buffer_ms=settings.log_buffer_ms)

    app = Flask(__name__)
    app.extensions[EXTENSION] = build_state(settings, redis_client)
    request_id.install(app)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    for target in BLUEPRINTS if blueprints is None else blueprints:
        app.register_blueprint(_load(target))
    if settings.trusted_proxy_hops:
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
