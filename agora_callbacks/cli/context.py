"""What the operator commands (dlq, replay, recording) share: settings and Redis.

Which Redis, first found wins: ``--redis-url``; ``REDIS_URL``; the embedded server
of an ``agora-callbacks dev`` running from the current directory (``dev`` writes
its URL to ``<data dir>/redis.url`` while it runs; ``AGORA_DEV_DIR`` names the data
dir, ``.agora-callbacks`` by default). With none of them a command stops with one
``Error:`` line: it never guesses ``127.0.0.1:6379``. On a terminal, the Redis used
and where it came from are printed on stderr.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click
import redis
import structlog

from agora_callbacks import logs
from agora_callbacks.cli.output import BadArgument, CommandFailed, note, stdout_is_terminal
from agora_callbacks.errors import ConfigError
from agora_callbacks.redis_conn import client_from_settings
from agora_callbacks.settings import Settings, shown_url

DEFAULT_DEV_DIR = ".agora-callbacks"
URL_FILE = "redis.url"
#: Where ``agora-callbacks dev`` keeps the NCS secret it generated (dev only).
SECRET_FILE = "dev-ncs-secret"

F = TypeVar("F", bound=Callable[..., Any])


def dev_dir() -> Path:
    return Path(os.environ.get("AGORA_DEV_DIR") or DEFAULT_DEV_DIR)


def dev_redis_url(data_dir: Path | None = None) -> str | None:
    """The embedded server's URL written by a running ``agora-callbacks dev``, if any."""
    return _read_value((data_dir or dev_dir()) / URL_FILE)


def dev_secret(data_dir: Path | None = None) -> str | None:
    """The NCS secret ``agora-callbacks dev`` generated in its data dir, if any."""
    return _read_value((data_dir or dev_dir()) / SECRET_FILE)


def _read_value(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except OSError:
        return None
    return value or None


def env_int(name: str, default: int) -> int:
    """The integer in environment variable ``name`` (``default`` when unset or
    empty), for an option's default; one ``Error:`` line naming it when it is not
    an integer."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise CommandFailed(f"{name}: expected an integer, got {raw!r}") from None


def redis_url_option(command: F) -> F:
    """The ``--redis-url`` option of a command that reads or writes Redis."""
    return click.option(
        "--redis-url", "redis_url", metavar="URL", default=None,
        help="Redis to use (default: $REDIS_URL, else the `agora-callbacks dev` running "
             "from this directory).")(command)


@dataclass(frozen=True)
class Target:
    """The Redis a command uses and where that came from (for messages)."""

    url: str
    source: str


def find_target(redis_url: str | None = None) -> Target | None:
    """Which Redis: ``--redis-url``, ``REDIS_URL``, the dev stack here; or None."""
    if redis_url:
        return Target(redis_url, "--redis-url")
    env = os.environ.get("REDIS_URL", "").strip()
    if env:
        return Target(env, "REDIS_URL")
    url = dev_redis_url()
    if url:
        return Target(url, f"the dev stack in {dev_dir() / URL_FILE}")
    return None


def target(redis_url: str | None = None) -> Target:
    """``find_target``, or one ``Error:`` line saying there is no Redis to use."""
    found = find_target(redis_url)
    if found is None:
        raise CommandFailed(
            f"no Redis to use: REDIS_URL is not set and no `agora-callbacks dev` runs from "
            f"this directory (no {dev_dir() / URL_FILE}); set REDIS_URL, pass --redis-url, "
            f"or start `agora-callbacks dev` here")
    return found


def settings(redis_url: str | None = None) -> Settings:
    """Settings from the environment with the Redis ``target`` picks. A bad variable
    is one ``Error:`` line naming it (exit 1), reported before a missing Redis; a bad
    ``--redis-url`` is a usage error (exit 2)."""
    chosen = find_target(redis_url)
    env = dict(os.environ)
    if chosen is not None:
        env["REDIS_URL"] = chosen.url
    try:
        loaded = Settings.from_env(env)
    except ConfigError as exc:
        message = str(exc)
        if redis_url and message.startswith("REDIS_URL:"):
            raise BadArgument("--redis-url:" + message.removeprefix("REDIS_URL:")) from None
        raise CommandFailed(message) from None
    target(redis_url)
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


def redis_client(current: Settings | None = None, *, redis_url: str | None = None,
                 quiet: bool = False) -> redis.Redis:
    """A Redis client for a command (logging configured on stderr); one ``Error:``
    line when Redis cannot be reached. On a terminal (and not ``quiet``: ``--json``),
    which Redis it is goes to stderr."""
    s = current or settings(redis_url)
    chosen = target(redis_url)
    configure_logging(s)
    client = client_from_settings(s, socket_timeout=max(5.0, s.redis_timeout_s))
    try:
        client.ping()
    except redis.RedisError as exc:
        hints = {"--redis-url": "check --redis-url",
                 "REDIS_URL": "check REDIS_URL, or unset it to use the `agora-callbacks dev` "
                              "running from this directory"}
        hint = hints.get(chosen.source, "is `agora-callbacks dev` still running?")
        raise CommandFailed(
            f"cannot reach Redis at {shown_url(s.redis_url)} (from {chosen.source}): "
            f"{str(exc).rstrip('.')}; {hint}") from None
    if stdout_is_terminal() and not quiet:
        click.echo(note(f"Redis {shown_url(s.redis_url)} (from {chosen.source})"), err=True)
    return client


def finite(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A click callback: ``nan`` and ``inf`` pass click's float ranges, but no rate,
    timeout or wait is such a number."""
    if not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value
