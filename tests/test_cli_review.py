"""What an operator's review of the command line found: wrong settings and arguments
that gave a traceback (or were silently taken), operator actions that could be done
twice, and ``simulate`` options that made it hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_support import environ, run


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    return lines[0]


# -- a Redis URL that redis-py cannot use -------------------------------------------------------

@pytest.mark.parametrize(("url", "why"), [
    ("redis://127.0.0.1:99999/0", "port"),
    ("redis://127.0.0.1:port/0", "port"),
    ("redis://[::1/0", "ipv6"),
    # redis-py would silently use database 0 for these.
    ("redis://127.0.0.1:1/abc", "database"),
    ("redis://127.0.0.1:1/1/2", "database"),
    ("redis://127.0.0.1:1/0?db=x", "db"),
])
def test_a_redis_url_redis_py_cannot_use_is_one_line(tmp_path: Path, url: str, why: str) -> None:
    ran = run(["dlq", "list"], env=environ(REDIS_URL=url), cwd=tmp_path)
    assert ran.code == 1, ran
    line = one_error_line(ran.err)
    assert line.startswith("Error: REDIS_URL: ") and why in line.lower()
    ran = run(["dlq", "list", "--redis-url", url], env=environ(), cwd=tmp_path)
    assert ran.code == 2, ran
    assert one_error_line(ran.err).startswith("Error: --redis-url: ")


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/15",
    "rediss://:pw@example.com:6380/2", "unix:///run/redis.sock?db=3", "redis://127.0.0.1/0?db=1",
])
def test_usable_redis_urls_are_still_accepted(url: str) -> None:
    from agora_callbacks.settings import Settings

    assert Settings.from_env({"REDIS_URL": url}).redis_url == url
