"""What an operator's review of the command line found: wrong settings and arguments
that gave a traceback (or were silently taken), operator actions that could be done
twice, and ``simulate`` options that made it hang."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_support import environ, run
from click.testing import CliRunner

from agora_callbacks import deadletters, keys, redrive
from agora_callbacks.cli import dlq as dlq_module
from agora_callbacks.cli import letters as letters_module
from agora_callbacks.cli import main
from agora_callbacks.cli import replay as replay_module
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.settings import Settings


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


# -- a body dead letter requeued twice at once ---------------------------------------------------

def _body_letter(client: redis.Redis, settings: Settings) -> str:
    entry_id = deadletters.add(client, settings.deadletter_maxlen, kind=deadletters.BODY,
                               reason="stale", detail="too old", body=b'{"not": "an event"}',
                               meta={"received_ms": 1, "request_id": "r-1"})
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def test_a_body_letter_read_by_two_requeues_goes_back_to_the_inbox_once(
        redis_client: redis.Redis, settings: Settings) -> None:
    letter = deadletters.get(redis_client, _body_letter(redis_client, settings))
    assert letter is not None
    # Two operators (or `dlq requeue --all` and `replay --from-dlq --all`) both read
    # the letter before either requeued it.
    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(lambda _: _outcome(redis_client, letter), range(4)))
    assert sorted(outcomes) == ["RequeuedAlready"] * 3 + ["requeued"]
    assert redis_client.xlen(keys.INBOX) == 1 and deadletters.count(redis_client) == 0


def _outcome(client: redis.Redis, letter: DeadLetter) -> str:
    try:
        deadletters.requeue_body(client, letter)
    except redrive.RequeuedAlready:
        return "RequeuedAlready"
    return "requeued"


@pytest.mark.parametrize("args", [["dlq", "requeue", "--all"], ["replay", "--from-dlq", "--all"]])
def test_a_requeue_that_lost_the_race_says_so_and_injects_nothing(
        redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch,
        args: list[str]) -> None:
    letter = deadletters.get(redis_client, _body_letter(redis_client, settings))
    assert letter is not None
    original = letters_module.selected

    def then_requeued_by_someone_else(*a: Any, **kw: Any) -> list[DeadLetter]:
        found = original(*a, **kw)
        deadletters.requeue_body(redis_client, letter)  # the other operator, first
        return found

    for module in (dlq_module, replay_module):
        monkeypatch.setattr(module, "selected", then_requeued_by_someone_else)
    result = CliRunner().invoke(main, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert f"{letter.id}: " in result.output and "requeued already" in result.output
    assert redis_client.xlen(keys.INBOX) == 1
