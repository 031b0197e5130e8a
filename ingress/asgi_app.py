"""The ingress as an ASGI app: the Flask app (``create_app``) on ``WEB_THREADS``
threads (``wsgi_threads``), behind ``body_deadline.BodyDeadline``, so every body is read
on the event loop, within ``BODY_READ_TIMEOUT_S`` and ``MAX_BODY_BYTES``, before a
thread runs the app."""

from __future__ import annotations

from agora_callbacks.ingress.app import create_app
from agora_callbacks.ingress.asgi_types import ASGIApp
from agora_callbacks.ingress.body_deadline import BodyDeadline
from agora_callbacks.ingress.wsgi_threads import on_threads
from agora_callbacks.settings import Settings


def create_asgi_app(settings: Settings | None = None) -> ASGIApp:
    """The ingress as an ASGI app. Raises ``ConfigError`` (naming the variable) on bad
    settings, as ``create_app`` does."""
    settings = settings if settings is not None else Settings.from_env()
    return BodyDeadline(on_threads(create_app(settings), settings.web_threads),
                        limit=settings.max_body_bytes,
                        timeout_s=settings.body_read_timeout_s,
                        require_v2=settings.require_v2)
