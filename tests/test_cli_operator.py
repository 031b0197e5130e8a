"""The operator commands (``dlq``, ``replay``, ``recording``) as an operator runs them:
the real ``agora-callbacks`` in a subprocess, its stdout a pipe or a terminal.

Which Redis (never a silent ``127.0.0.1:6379``), malformed dead letter ids, exit
codes and ``Error:`` lines, colour and aligned tables on a terminal only.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from cli_support import ANSI, BIN_DIR, environ, one_error_line, run

from agora_callbacks import deadletters, keys
from agora_callbacks.embedded_server import ServerProcess
from agora_callbacks.schemas import parse_event
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import fold

SID = "f" * 32
NO_REDIS = "Error: no Redis to use: REDIS_URL is not set and no `agora-callbacks dev` runs"
RED = "\x1b[31m"


def no_redis_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No REDIS_URL, and a dev data dir of the test's own (empty unless written)."""
    return environ(drop=("REDIS_URL",), AGORA_DEV_DIR=str(tmp_path / "dev"), **extra)


def dev_stack_here(tmp_path: Path, url: str) -> None:
    """What a running ``agora-callbacks dev`` leaves in its data dir: its Redis URL."""
    (tmp_path / "dev").mkdir(exist_ok=True)
    (tmp_path / "dev" / "redis.url").write_text(url + "\n")


def letters(client: redis.Redis, settings: Settings) -> tuple[str, str]:
    """A body dead letter and a handler one, of recording ``SID``."""
    bodies = [encode(e) for e in lifecycle("composite", SID, start_ms=1_700_000_000_000, seed=1)]
    detail = '{"payload.sequence": ["Not a valid integer."]}'
    body = deadletters.add(client, settings.deadletter_maxlen, kind=deadletters.BODY,
                           reason="invalid", detail=detail, body=bodies[3], meta={})
    handler = deadletters.add(client, settings.deadletter_maxlen, kind=deadletters.HANDLER,
                              reason="handler_failed", detail="Traceback ...", body=bodies[5],
                              meta={}, key=f"{SID}:31:5", handler="myapp.on_upload",
                              exception="ValueError: boom")
    return body.decode(), handler.decode()


# -- which Redis ---------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["dlq", "list"], ["dlq", "show", "1-0"], ["dlq", "requeue", "--all"],
    ["dlq", "export", "-", "--all"], ["replay", "--from-dlq", "--all"], ["recording", SID],
])
def test_without_any_redis_each_command_says_so(tmp_path: Path, args: list[str]) -> None:
    ran = run(args, env=no_redis_env(tmp_path), cwd=tmp_path)
    assert ran.code == 1
    assert one_error_line(ran.err).startswith(NO_REDIS)
    assert "--redis-url" in ran.err and ran.out == ""


def test_replaying_a_file_without_any_redis_says_so(tmp_path: Path) -> None:
    (tmp_path / "bodies.txt").write_text('{"a": 1}\n')
    ran = run(["replay", "bodies.txt"], env=no_redis_env(tmp_path), cwd=tmp_path)
    assert ran.code == 1 and one_error_line(ran.err).startswith(NO_REDIS)
    # A dry run needs no Redis.
    ran = run(["replay", "bodies.txt", "--dry-run"], env=no_redis_env(tmp_path), cwd=tmp_path)
    assert ran.code == 0 and "1 bodies would be replayed" in ran.out


def test_the_dev_stack_of_this_directory_is_used_and_named_on_a_terminal(
        tmp_path: Path, redis_server: ServerProcess, redis_client: redis.Redis,
        settings: Settings) -> None:
    body, handler = letters(redis_client, settings)
    dev_stack_here(tmp_path, redis_server.url)
    env = no_redis_env(tmp_path)

    on_terminal = run(["dlq", "list"], env=env, cwd=tmp_path, tty=True)
    assert on_terminal.code == 0, on_terminal
    source = f"Redis {redis_server.url} (from the dev stack in {tmp_path / 'dev' / 'redis.url'})"
    assert on_terminal.err.strip() == source
    assert body in on_terminal.out and handler in on_terminal.out

    piped = run(["dlq", "list"], env=env, cwd=tmp_path)
    assert piped.code == 0 and piped.err == ""
    # The same text, without colour, when stdout is not a terminal.
    assert ANSI.search(piped.out) is None and ANSI.search(on_terminal.out) is not None
    assert on_terminal.plain_out == piped.out

    as_json = run(["dlq", "list", "--json"], env=env, cwd=tmp_path, tty=True)
    assert as_json.code == 0 and as_json.err == ""
    assert ANSI.search(as_json.out) is None
    assert [json.loads(line)["id"] for line in as_json.out.splitlines()] == [body, handler]


def test_redis_url_option_wins_and_an_unreachable_redis_is_one_line(
        tmp_path: Path, redis_server: ServerProcess, redis_client: redis.Redis,
        settings: Settings) -> None:
    body, _ = letters(redis_client, settings)
    dead = "redis://127.0.0.1:1/0"
    env = environ(REDIS_URL=dead, AGORA_DEV_DIR=str(tmp_path / "dev"))
    ran = run(["dlq", "show", body, "--redis-url", redis_server.url], env=env, tty=True)
    assert ran.code == 0, ran
    assert ran.err.strip() == f"Redis {redis_server.url} (from --redis-url)"
    assert "Not a valid integer" in ran.out

    ran = run(["dlq", "show", body], env=env)
    assert ran.code == 1
    line = one_error_line(ran.err)
    assert line.startswith(f"Error: cannot reach Redis at {dead} (from REDIS_URL): ")
    assert line.endswith("check REDIS_URL, or unset it to use the `agora-callbacks dev` "
                         "running from this directory")

    # A password never shows; a dev stack that is gone is named as such.
    ran = run(["recording", SID, "--redis-url", "redis://:hunter2@127.0.0.1:1/0"], env=env)
    assert ran.code == 1 and "hunter2" not in ran.err
    assert one_error_line(ran.err).startswith(
        "Error: cannot reach Redis at redis://***@127.0.0.1:1/0 (from --redis-url): ")
    dev_stack_here(tmp_path, dead)
    ran = run(["recording", SID], env=no_redis_env(tmp_path), cwd=tmp_path)
    assert ran.code == 1
    assert one_error_line(ran.err).endswith("is `agora-callbacks dev` still running?")

    ran = run(["dlq", "list", "--redis-url", "http://127.0.0.1:6379"], env=env)
    assert ran.code == 2
    assert one_error_line(ran.err) == ("Error: --redis-url: expected a redis://, rediss:// or "
                                       "unix:// URL, got 'http://127.0.0.1:6379'")


# -- malformed dead letter ids ------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["dlq", "show", "bogus"], ["dlq", "requeue", "bogus"], ["dlq", "export", "-", "bogus"],
    ["dlq", "list", "--after", "bogus"], ["replay", "--from-dlq", "bogus"],
    ["dlq", "requeue", "1700000000000-0", "1700000000000"],
])
def test_a_malformed_dead_letter_id_is_one_usage_line(tmp_path: Path, args: list[str]) -> None:
    # Checked before any Redis is looked for: none is configured here.
    ran = run(args, env=no_redis_env(tmp_path), cwd=tmp_path)
    assert ran.code == 2, ran
    bad = args[-1]
    assert one_error_line(ran.err) == (
        f"Error: {bad!r} is not a dead letter id: expected the form 1700000000000-0 "
        "(as `agora-callbacks dlq list` shows)")
    assert ran.out == ""


def test_an_unknown_dead_letter_is_exit_1(redis_client: redis.Redis) -> None:
    for args in (["dlq", "show", "1700000000000-0"], ["dlq", "requeue", "1700000000000-0"],
                 ["replay", "--from-dlq", "1700000000000-0"]):
        ran = run(args)
        assert ran.code == 1
        assert one_error_line(ran.err) == "Error: no dead letter 1700000000000-0"


# -- requeue ------------------------------------------------------------------------------------

def test_a_handler_requeue_says_its_outcome_comes_later(
        redis_client: redis.Redis, settings: Settings) -> None:
    body, handler = letters(redis_client, settings)
    ran = run(["dlq", "requeue", handler, body], tty=True)
    assert ran.code == 0, ran
    lines = ANSI.sub("", ran.out).splitlines()
    assert lines[0].startswith(f"{handler}: requeued (handler) -> task myapp.on_upload[")
    assert lines[1].startswith(f"{body}: requeued (body) -> inbox ")
    assert lines[2] == "2 requeued, 0 failed"
    assert lines[3].startswith("The handler outcome comes later: a worker runs the task")
    assert f"`agora-callbacks dlq list --kind handler --sid {SID}`" in lines[3]
    assert "Flower" in lines[3]
    assert "\x1b[32m2 requeued, 0 failed" in ran.out  # green on a terminal
    assert deadletters.count(redis_client) == 0


# -- bad settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["dlq", "list"], ["recording", SID], ["replay", "--from-dlq", "--all"], ["web"],
])
def test_a_non_integer_setting_is_one_line_for_every_command(
        tmp_path: Path, args: list[str]) -> None:
    ran = run(args, env=environ(MAX_BODY_BYTES="abc", AGORA_NCS_SECRETS="s"), cwd=tmp_path)
    assert ran.code == 1
    assert ran.err == "Error: MAX_BODY_BYTES: expected an integer, got 'abc'\n"
    assert ran.out == ""


def test_a_non_integer_setting_stops_a_celery_worker_in_one_line(tmp_path: Path) -> None:
    # Started as a deployment would, by `celery` itself: no traceback either.
    ran = run(["-A", "agora_callbacks.workers.app:celery_app", "worker", "--pool", "solo"],
              env=environ(MAX_BODY_BYTES="abc"), cwd=tmp_path, program=BIN_DIR / "celery")
    assert ran.code == 1, ran
    assert (ran.out + ran.err).strip() == "Error: MAX_BODY_BYTES: expected an integer, got 'abc'"


# -- recording ----------------------------------------------------------------------------------

def _record() -> dict[str, object]:
    state = None
    for envelope in lifecycle("individual", SID, start_ms=1_700_000_000_000, seed=3,
                              with_errors=True):
        state = fold(state, parse_event(envelope))
    assert state is not None
    return state


def test_recording_unknown_sid_is_an_error_line_and_exit_1(redis_client: redis.Redis) -> None:
    ran = run(["recording", "0" * 32])
    assert ran.code == 1 and ran.out == ""
    assert one_error_line(ran.err).startswith(f"Error: no record of recording {'0' * 32}")


def test_recording_lists_event_types_as_numbers_and_colours_its_status(
        redis_client: redis.Redis) -> None:
    record = _record()
    store.save(redis_client, SID, record, ttl_s=60)
    counts = record["event_types"]
    assert isinstance(counts, dict)
    numbers = sorted(int(k) for k in counts)
    assert sorted(str(n) for n in numbers) != [str(n) for n in numbers]  # a real test of it

    ran = run(["recording", SID], tty=True)
    assert ran.code == 0, ran
    events = next(line for line in ran.plain_out.splitlines() if line.startswith("Events: "))
    listed = [int(part.split(" x")[0]) for part in events.split("(")[1].split(")")[0].split(", ")]
    assert listed == numbers
    assert "Status: \x1b[31m\x1b[1mexited_abnormally" in ran.out or \
        "Status: \x1b[32mexited" in ran.out
    assert f"{RED}\x1b[1mErrors (" in ran.out

    as_json = run(["recording", SID, "--json"], tty=True)
    assert as_json.code == 0 and ANSI.search(as_json.out) is None
    assert json.loads(as_json.out) == record
    assert [int(k) for k in json.loads(as_json.out)["event_types"]] == numbers


def test_a_redis_error_in_the_middle_of_a_command_is_one_line(
        redis_client: redis.Redis) -> None:
    # Redis answers, then refuses the command: a key of another type than expected.
    redis_client.rpush(keys.recording_state(SID), "not a record")
    ran = run(["recording", SID])
    assert ran.code == 1 and ran.out == ""
    assert one_error_line(ran.err).startswith("Error: Redis: WRONGTYPE")


@pytest.mark.parametrize(("variable", "raw", "message"), [
    ("MAX_BODY_BYTES", "abc", "MAX_BODY_BYTES: expected an integer, got 'abc'"),
    ("TRUSTED_PROXY_HOPS", "1.5", "TRUSTED_PROXY_HOPS: expected an integer, got '1.5'"),
    ("PORT", "", "PORT: expected an integer, got ''"),
    ("REDIS_TIMEOUT_S", "fast", "REDIS_TIMEOUT_S: expected a number, got 'fast'"),
    ("WEB_THREADS", "0", "WEB_THREADS: must be a positive integer, got '0'"),
    ("BODY_READ_TIMEOUT_S", "-1", "BODY_READ_TIMEOUT_S: must be a positive number, got '-1'"),
])
def test_every_numeric_setting_names_itself_and_what_it_expected(
        variable: str, raw: str, message: str) -> None:
    from agora_callbacks.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: raw})
    assert str(caught.value) == message
