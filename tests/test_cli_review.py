"""What an operator's review of the command line found: wrong settings and arguments
that gave a traceback (or were silently taken), operator actions that could be done
twice, and ``simulate`` options that made it hang."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import redis
from cli_support import environ, one_error_line, run
from click.testing import CliRunner

from agora_callbacks import deadletters, keys
from agora_callbacks.cli import dlq as dlq_module
from agora_callbacks.cli import letters as letters_module
from agora_callbacks.cli import main
from agora_callbacks.cli import replay as replay_module
from agora_callbacks.deadletters import DeadLetter
from agora_callbacks.embedded_server import free_port
from agora_callbacks.settings import Settings
from agora_callbacks.simulate import sender
from agora_callbacks.simulate.lifecycles import lifecycle

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
    except deadletters.RequeuedAlready:
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
    if args[0] == "dlq":  # skipped, not failed: the letter is on its way, once
        assert result.exit_code == 0, result.output
        assert "0 requeued, 0 failed, 1 skipped: requeued already" in result.output


def test_replay_of_a_named_letter_requeued_by_another_command_does_not_fail(
        redis_client: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``dlq requeue``: the letter is on its way through the other command, once;
    only a letter that cannot be replayed (another kind) makes the command exit 1."""
    letter = deadletters.get(redis_client, _body_letter(redis_client, settings))
    assert letter is not None
    original = letters_module.selected

    def then_requeued_by_someone_else(*a: Any, **kw: Any) -> list[DeadLetter]:
        found = original(*a, **kw)
        deadletters.requeue_body(redis_client, letter)
        return found

    monkeypatch.setattr(replay_module, "selected", then_requeued_by_someone_else)
    result = CliRunner().invoke(main, ["replay", "--from-dlq", letter.id])
    assert result.exit_code == 0, result.output
    assert f"{letter.id}: skipped (requeued already)" in result.output
    assert "0 dead letter(s) replayed into the inbox, 1 skipped" in result.output
    assert redis_client.xlen(keys.INBOX) == 1


# -- simulate: options and URLs that hung it or gave a traceback ------------------------------

@pytest.fixture
def listening_url() -> Iterator[str]:
    """A URL where a socket accepts connections (and never answers): enough for
    ``simulate``'s probe to let it start sending."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/agora/ncs"


@pytest.mark.parametrize(("option", "value"), [
    ("--timeout", "nan"), ("--timeout", "inf"), ("--rate", "nan"), ("--rate", "inf"),
])
def test_simulate_refuses_numbers_that_are_not_finite(
        tmp_path: Path, listening_url: str, option: str, value: str) -> None:
    ran = run(["simulate", "--url", listening_url, "--secret", "s", "-q", option, value],
              cwd=tmp_path, timeout=60)
    assert ran.code == 2, ran
    assert ran.err.splitlines()[-1].startswith(f"Error: Invalid value for '{option}': ")
    assert "Traceback" not in ran.err and ran.out == ""


@pytest.mark.parametrize(("option", "value", "bounds"), [
    ("--recordings", "10001", "1<=x<=10000"), ("-n", "1" + "0" * 30, "1<=x<=10000"),
    ("--recordings", "0", "1<=x<=10000"),
    ("--concurrency", "257", "1<=x<=256"), ("-c", "1000000000", "1<=x<=256"),
    ("-c", "0", "1<=x<=256"),
])
def test_simulate_bounds_the_recordings_and_the_connections(
        tmp_path: Path, option: str, value: str, bounds: str) -> None:
    """Too many recordings (all built before the first request) or connections (a
    thread each) would hang or exhaust the machine: one usage line naming the option
    and its range, before the URL is even tried (nothing listens there)."""
    url = f"http://127.0.0.1:{free_port()}/agora/ncs"
    ran = run(["simulate", "--url", url, "--secret", "s", "-q", option, value],
              cwd=tmp_path, timeout=60)
    assert ran.code == 2, ran
    names = ("--recordings' / '-n" if option in ("-n", "--recordings")
             else "--concurrency' / '-c")
    assert ran.err.splitlines()[-1] == (
        f"Error: Invalid value for '{names}': {value} is not in the range {bounds}.")
    assert "Traceback" not in ran.err and ran.out == ""


def test_send_reports_a_request_that_raised_instead_of_hanging(listening_url: str) -> None:
    plan = sender.build_plan([lifecycle("web", "a" * 32, start_ms=1, seed=1)[:3]], "s")
    done: list[sender.Report] = []
    # A timeout the socket module refuses: each request raises ValueError.
    thread = threading.Thread(target=lambda: done.append(sender.send(
        listening_url, plan.deliveries, concurrency=2, timeout=float("nan"))), daemon=True)
    thread.start()
    thread.join(30)
    assert done, "send() never returned"
    assert done[0].sent == 3 and done[0].errors == {"ValueError": 3}


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:99999/agora/ncs", "http://127.0.0.1:port/agora/ncs", "http://[::1/agora/ncs",
    "http://bad..host/agora/ncs", f"http://{'a' * 64}.example/agora/ncs",
])
def test_simulate_a_url_that_cannot_be_used_is_one_usage_line(tmp_path: Path, url: str) -> None:
    ran = run(["simulate", "--url", url, "--secret", "s"], cwd=tmp_path, timeout=60)
    assert ran.code == 2, ran
    assert ran.err.splitlines()[-1].startswith("Error: Invalid value for '--url': ")
    assert "Traceback" not in ran.err and ran.out == ""


@pytest.mark.parametrize(("command", "variable"), [
    ("simulate", "PORT"), ("dev", "PORT"), ("dev", "WORKER_METRICS_PORT"),
])
def test_a_port_variable_that_is_not_a_number_is_one_line(
        tmp_path: Path, command: str, variable: str) -> None:
    # Read for an option's default, before `dev` starts anything.
    args = (["simulate", "--secret", "s"] if command == "simulate"
            else ["dev", "--no-flower", "--data-dir", str(tmp_path / "dev")])
    ran = run(args, env=environ(**{variable: "abc"}), cwd=tmp_path, timeout=60)
    assert ran.code == 1, ran
    assert one_error_line(ran.err) == f"Error: {variable}: expected an integer, got 'abc'"


# -- dlq export and replay of a file ---------------------------------------------------------

def test_exporting_no_dead_letter_still_writes_the_file(
        redis_client: redis.Redis, tmp_path: Path) -> None:
    # Yesterday's export must not stay behind to be replayed again.
    out = tmp_path / "dead.jsonl"
    out.write_text('{"id": "1-0", "kind": "body", "body": "yesterday"}\n')
    result = CliRunner().invoke(main, ["dlq", "export", str(out), "--all"])
    assert result.exit_code == 0, result.output
    assert "0 dead letter(s) exported" in result.output
    assert out.read_text() == ""
    fresh = tmp_path / "fresh.jsonl"
    assert CliRunner().invoke(main, ["dlq", "export", str(fresh), "--all"]).exit_code == 0
    assert fresh.exists() and fresh.read_text() == ""


@pytest.mark.parametrize("line", [
    '{"id": "1-0", "kind": "body", "body_b64": "!!!x"}',
    '{"id": "1-0", "kind": "body", "body_b64": 12}',
])
@pytest.mark.parametrize("dry_run", [True, False])
def test_a_corrupt_export_line_is_one_line_naming_it(
        redis_client: redis.Redis, tmp_path: Path, line: str, dry_run: bool) -> None:
    good = '{"id": "2-0", "kind": "body", "body": "{}"}'
    path = tmp_path / "dead.jsonl"
    path.write_text(f"{good}\n{line}\n")
    ran = run(["replay", str(path), *(["--dry-run"] if dry_run else [])], cwd=tmp_path)
    assert ran.code == 1, ran
    assert one_error_line(ran.err).startswith(f"Error: {path} line 2: body_b64 is not base64")
    # What is in the inbox is what the message says: every line before the bad one.
    assert redis_client.xlen(keys.INBOX) == (0 if dry_run else 1)
    assert ("the lines before it were replayed, none from it on" in ran.err) is not dry_run


# -- simulate's verdict --------------------------------------------------------------------------

def test_the_verdict_says_what_to_check_for_each_failing_status() -> None:
    from agora_callbacks.cli.simulate import verdict

    figures = {"sent": 10, "accepted": 4, "rejected": {"401": 2, "413": 1, "503": 3},
               "errors": {}}
    line, ok = verdict(figures, "--secret")
    assert not ok
    assert line.startswith("FAILED: 4 of 10 requests accepted; 2 answered 401, 1 answered 413, "
                           "3 answered 503. ")
    assert "401: the signature was refused" in line
    assert "413: " in line and "MAX_BODY_BYTES" in line
    assert "503: the ingress could not store the bodies" in line


# -- a sid with odd characters ---------------------------------------------------------------

@pytest.mark.parametrize("sid", ["abc\nError: forged", "abc\x1b[2J", " abc ", ""])
def test_an_unknown_sid_with_odd_characters_is_one_plain_line(
        redis_client: redis.Redis, tmp_path: Path, sid: str) -> None:
    ran = run(["recording", sid], cwd=tmp_path)
    assert ran.code == 1, ran
    line = one_error_line(ran.err)
    assert "\x1b" not in line and f"recording {sid!r}:" in line


@pytest.mark.parametrize(("stored", "why"), [
    (b"{not json", "not JSON"), (b"[1, 2]", "not an object"), (b'{"sid": "x"}', "status"),
])
def test_a_stored_record_that_is_not_a_record_is_one_line(
        redis_client: redis.Redis, tmp_path: Path, stored: bytes, why: str) -> None:
    redis_client.set(keys.recording_state("corrupt-sid"), stored)
    for args in (["recording", "corrupt-sid"], ["recording", "corrupt-sid", "--json"]):
        ran = run(args, cwd=tmp_path)
        assert ran.code == 1, ran
        line = one_error_line(ran.err)
        assert line.startswith("Error: the record of recording corrupt-sid cannot be read: ")
        assert why in line


# -- web: options out of range -------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "99999"], ["--workers", "0"],
                                  ["--workers", "-2"]])
def test_web_refuses_a_port_or_worker_count_out_of_range(
        monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    from agora_callbacks.cli import web as web_module

    started: list[list[str]] = []
    monkeypatch.setattr(web_module.os, "execve", lambda path, argv, env: started.append(argv))
    monkeypatch.setenv("AGORA_NCS_SECRETS", "s")
    result = CliRunner().invoke(main, ["web", *args])
    # 0 was taken as "the default" ($PORT, $WEB_CONCURRENCY): a server on another
    # port, or with other workers, than asked for.
    assert result.exit_code == 2 and started == [], (result.output, started)
    assert f"Invalid value for '{args[0]}'" in result.output


@pytest.mark.parametrize("command", [["dlq", "requeue"], ["replay", "--from-dlq"],
                                     ["dlq", "export", "-"]])
def test_a_dead_letter_id_given_twice_is_taken_once(
        redis_client: redis.Redis, settings: Settings, command: list[str]) -> None:
    letter_id = _body_letter(redis_client, settings)
    result = CliRunner().invoke(main, [*command, letter_id, letter_id])
    assert result.exit_code == 0, result.output
    if command[1] == "export":
        exported = [line for line in result.output.splitlines() if line.startswith("{")]
        assert len(exported) == 1 and letter_id in exported[0]
    else:
        assert redis_client.xlen(keys.INBOX) == 1 and deadletters.count(redis_client) == 0


@pytest.mark.parametrize("option", ["--sid", "--reason"])
def test_an_empty_filter_is_refused_not_taken_as_no_filter(
        redis_client: redis.Redis, settings: Settings, option: str) -> None:
    # `dlq list --sid "$SID" --json` with SID unset must not list every dead letter.
    _body_letter(redis_client, settings)
    result = CliRunner().invoke(main, ["dlq", "list", option, "", "--json"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output and '"id"' not in result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_dev_refuses_a_ready_timeout_that_is_not_a_positive_number(
        tmp_path: Path, value: str) -> None:
    # Refused before anything starts (nan passed click's float type and waited forever
    # for nothing; a negative wait gave up at once).
    ran = run(["dev", "--data-dir", str(tmp_path / "dev"), "--ready-timeout", value],
              cwd=tmp_path, timeout=60)
    assert ran.code == 2, ran
    assert ran.err.splitlines()[-1].startswith("Error: Invalid value for '--ready-timeout': ")
    assert "Traceback" not in ran.err
    assert not (tmp_path / "dev").exists()
