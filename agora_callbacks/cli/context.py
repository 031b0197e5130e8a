"""What the operator commands (dlq, replay, recording) share: settings and Redis.

``REDIS_URL`` wins when set. When it is not, and ``agora-callbacks dev`` is
running on its embedded server from the current directory, the commands use that
server: ``dev`` writes its URL to ``<data dir>/redis.url`` while it runs
(``AGORA_DEV_DIR`` names the data dir, ``.agora-callbacks`` by default).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import click
import redis
import structlog

from agora_callbacks import logs
from agora_callbacks.errors import ConfigError
from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings

DEFAULT_DEV_DIR = ".agora-callbacks"
URL_FILE = "redis.url"


def dev_dir() -> Path:
    return Path(os.environ.get("AGORA_DEV_DIR") or DEFAULT_DEV_DIR)


def dev_redis_url(data_dir: Path | None = None) -> str | None:
    """The embedded server's URL written by a running ``agora-callbacks dev``, if any."""
    path = (data_dir or dev_dir()) / URL_FILE
    try:
        url = path.read_text().strip()
    except OSError:
        return None
    return url or None


def safe_url(url: str) -> str:
    """``url`` without its user and password, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def settings() -> Settings:
    """Settings from the environment (a bad variable is a usage error naming it), with
    the dev stack's Redis when ``REDIS_URL`` is not set."""
    try:
        loaded = Settings.from_env()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if not os.environ.get("REDIS_URL"):
        url = dev_redis_url()
        if url:
            loaded = replace(loaded, redis_url=url)
    return loaded


class _Stderr:
    """Whatever ``sys.stderr`` is at the time of writing (it is swapped under test)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(current: Settings) -> None:
    """The service's log configuration, but on stderr: a command's stdout is its
    output (tables, JSON), its log lines are the audit trail."""
    logs.configure(current.log_level, current.log_format)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=_Stderr()))  # type: ignore[arg-type]


def redis_client(current: Settings | None = None) -> redis.Redis:
    """A Redis client for a command (logging configured on stderr); a clear error when
    Redis cannot be reached."""
    s = current or settings()
    configure_logging(s)
    client = client_from_settings(s, socket_timeout=max(5.0, s.redis_timeout_s))
    try:
        client.ping()
    except redis.RedisError as exc:
        raise click.ClickException(
            f"cannot reach Redis at {safe_url(s.redis_url)} ({exc}); set REDIS_URL, or start "
            "`agora-callbacks dev` in this directory"
        ) from None
    return client
