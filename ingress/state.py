"""What the ingress's request handlers share, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import Flask, current_app
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from agora_callbacks.ingress.inbox_writer import InboxWriter
from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings

EXTENSION = "agora_callbacks.ingress"


@dataclass(frozen=True)
class IngressState:
    settings: Settings
    redis: redis.Redis
    writer: InboxWriter
    secrets: tuple[bytes, ...]
    retry_after: str


def ingress_redis(settings: Settings) -> redis.Redis:
    """A client that fails fast: one immediate retry on a connection error (a pooled
    connection that died with a Redis restart reconnects), none on a timeout. redis-py's
    default (10 retries with exponential backoff) would spend NCS's 10 s budget."""
    return client_from_settings(
        settings, retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    )


def build_state(settings: Settings, client: redis.Redis | None = None) -> IngressState:
    client = client if client is not None else ingress_redis(settings)
    return IngressState(
        settings=settings,
        redis=client,
        writer=InboxWriter(client),
        secrets=tuple(s.encode("utf-8") for s in settings.ncs_secrets),
        retry_after=str(settings.retry_after_s),
    )


def get_state(app: Flask | None = None) -> IngressState:
    target = app if app is not None else current_app
    state: IngressState = target.extensions[EXTENSION]
    return state
