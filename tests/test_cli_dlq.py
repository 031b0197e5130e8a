"""``agora-callbacks dlq``: list, show, export, requeue."""

from __future__ import annotations

import json

import pytest
import redis
from click.testing import CliRunner

from agora_callbacks import deadletters, inbox, keys
from agora_callbacks.cli import main
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers import hook_runs
from agora_callbacks.workers.application import DEFAULT_QUEUE
from agora_callbacks.workers.ordering import Failure

START = 1_700_000_000_000


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["dlq", *args], catch_exceptions=False)
    return result.exit_code, result.output


def add_body_letter(client: redis.Redis, settings: Settings, body: bytes,
                    reason: str = "invalid") -> str:
    entry_id = deadletters.add(
        client, settings.deadletter_maxlen, kind=deadletters.BODY, reason=reason,
        detail="payload.sequence: Not a valid integer.", body=body,
        meta={"received_ms": START, "signature": "v2", "secret_index": 0,
              "remote_addr": "10.0.0.1", "request_id": "r-1"})
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def add_handler_letter(client: redis.Redis, settings: Settings, body: bytes) -> str:
    entry_id = deadletters.add(
        client, settings.deadletter_maxlen, kind=deadletters.HANDLER, reason="retries_exhausted",
        detail="ValueError: boom", body=body, meta={"received_ms": START},
        key="abc:31:7", handler="myapp.handlers.on_upload",
        exception="Traceback (most recent call last):\n  ...\nValueError: boom")
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def add_hook_letter(client: redis.Redis, settings: Settings, sid: str = "f" * 32,
                    phase: str = "files_ready") -> str:
    """A hook dead letter as a worker writes it (the claim, then the outcome script)."""
    run = hook_runs.HookRun(
        sid=sid, phase=phase, info={"sequence": 9, "source": "events"},
        record={"sid": sid, "files": [{"file_name": "a.m3u8"}]},
        name="myapp.hooks.publish", task_id="t-1")
    assert hook_runs.claim(client, run, 60)
    return hook_runs.record_outcome(
        client, run, Failure("handler_failed", "Traceback (most recent call last):\n  ...\n"
                             "OSError: bucket unreachable", "OSError: bucket unreachable"),
        maxlen=settings.deadletter_maxlen, ttl_s=60)


@pytest.fixture
def bodies() -> list[bytes]:
    return [encode(e) for e in lifecycle("composite", "f" * 32, start_ms=START, seed=1)]


def test_every_command_has_help() -> None:
    for args in ([], ["list"], ["show"], ["requeue"], ["export"]):
        code, out = run(*args, "--help")
        assert code == 0 and "Usage:" in out


def test_list_empty(redis_client: redis.Redis) -> None:
    code, out = run("list")
    assert code == 0 and out.strip() == "no dead letters"


def columns(lines: list[str]) -> list[dict[str, str]]:
    """A table's rows as {header: cell}, cut at the header's column starts (the
    columns are aligned, so every cell starts where its header does)."""
    header = lines[0]
    names = header.replace("TIME (UTC)", "TIME_(UTC)").split()
    starts = [header.index(n.replace("_", " ")) for n in names]
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip([n.replace("_", " ") for n in names], cells, strict=True)))
    return rows


def test_list_shows_kind_reason_sid_sequence_handler_error(
        redis_client: redis.Redis, settings: Settings, bodies: list[bytes]) -> None:
    a = add_body_letter(redis_client, settings, bodies[3])
    b = add_body_letter(redis_client, settings, b"\xff not json", reason="not_json")
    c = add_handler_letter(redis_client, settings, bodies[5])
    code, out = run("list")
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[0].split() == ["ID", "TIME", "(UTC)", "KIND", "REASON", "SID", "SEQ", "EVENT",
                                "HANDLER", "ERROR"]
    rows = {row["ID"]: row for row in columns(lines)}
    ev3, ev5 = (str(json.loads(bodies[i])["eventType"]) for i in (3, 5))
    keys_ = ["KIND", "REASON", "SID", "SEQ", "EVENT", "HANDLER", "ERROR"]
    assert [rows[a][k] for k in keys_] == ["body", "invalid", "f" * 32, "3", ev3, "-",
                                           "payload.sequence: Not a valid integer."]
    assert [rows[b][k] for k in keys_] == ["body", "not_json", "-", "-", "-", "-",
                                           "payload.sequence: Not a valid integer."]
    assert [rows[c][k] for k in keys_] == ["handler", "retries_exhausted", "f" * 32, "5", ev5,
                                           "myapp.handlers.on_upload", "ValueError: boom"]

    code, out = run("list", "--json")
    rows_json = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["id"] for r in rows_json] == [a, b, c]
    assert rows_json[0]["sid"] == "f" * 32 and rows_json[0]["sequence"] == 3
    assert "body" not in rows_json[0]
    assert rows_json[2]["error"] == "ValueError: boom"


def test_error_column_flattens_validation_messages_and_stays_one_line(
        redis_client: redis.Redis, settings: Settings) -> None:
    deadletters.add(
        redis_client, settings.deadletter_maxlen, kind=deadletters.BODY, reason="invalid",
        detail=json.dumps({"payload.sequence": ["Not a valid integer."],
                           "eventType": ["Missing data for required field."]}),
        body=b"{}", meta={})
    deadletters.add(
        redis_client, settings.deadletter_maxlen, kind=deadletters.HANDLER, reason="handler_failed",
        detail="Traceback ...", body=b"{}", meta={}, handler="h",
        exception="RuntimeError: " + "x" * 300 + "\nsecond line")
    code, out = run("list")
    assert code == 0, out
    rows = columns(out.strip().splitlines())
    assert rows[0]["ERROR"] == ("payload.sequence: Not a valid integer.; "
                                "eventType: Missing data for required field.")
    assert rows[1]["ERROR"].startswith("RuntimeError: xxx") and rows[1]["ERROR"].endswith("...")
    assert len(rows[1]["ERROR"]) == 100 and len(out.strip().splitlines()) == 3


def test_list_filters_by_kind_reason_and_sid(redis_client: redis.Redis, settings: Settings,
                                             bodies: list[bytes]) -> None:
    a = add_body_letter(redis_client, settings, bodies[3])
    b = add_body_letter(redis_client, settings, b"\xff not json", reason="not_json")
    c = add_handler_letter(redis_client, settings, bodies[5])
    other = [encode(e) for e in lifecycle("web", "e" * 32, start_ms=START, seed=2)]
    d = add_body_letter(redis_client, settings, other[1])

    def ids(*args: str) -> list[str]:
        code, out = run("list", "--json", *args)
        assert code == 0, out
        return [json.loads(line)["id"] for line in out.strip().splitlines()]

    assert ids("--kind", "handler") == [c]
    assert ids("--kind", "body") == [a, b, d]
    assert ids("--reason", "not_json") == [b]
    assert ids("--reason", "not_json", "--reason", "retries_exhausted") == [b, c]
    assert ids("--sid", "f" * 32) == [a, c]
    assert ids("--sid", "f" * 32, "--kind", "body") == [a]
    assert ids("--sid", "0" * 32) == []
    code, out = run("list", "--sid", "0" * 32)
    assert code == 0 and out.strip() == "no dead letter matches (4 in all)"
    code, out = run("list", "--kind", "body", "-n", "2")
    assert code == 0 and f"(2 shown; next page: --after {b})" in out
    code, out = run("list", "--kind", "body", "-n", "2", "--after", b)
    assert code == 0 and d in out and "next page" not in out
    code, out = run("list", "--kind", "nope")
    assert code == 2 and "'nope' is not one of 'body', 'handler', 'hook'" in out


def test_list_shows_the_recording_and_phase_of_a_hook_letter(
        redis_client: redis.Redis, settings: Settings, bodies: list[bytes]) -> None:
    a = add_body_letter(redis_client, settings, bodies[3])
    h = add_hook_letter(redis_client, settings)
    other = add_hook_letter(redis_client, settings, sid="e" * 32, phase="failed")
    code, out = run("list", "--kind", "hook")
    assert code == 0, out
    rows = {row["ID"]: row for row in columns(out.strip().splitlines())}
    keys_ = ["KIND", "REASON", "SID", "SEQ", "EVENT", "HANDLER", "ERROR"]
    assert [rows[h][k] for k in keys_] == ["hook", "handler_failed", "f" * 32, "-",
                                           "files_ready", "myapp.hooks.publish",
                                           "OSError: bucket unreachable"]
    assert rows[other]["SID"] == "e" * 32 and rows[other]["EVENT"] == "failed"
    assert a not in rows

    code, out = run("list", "--json", "--sid", "f" * 32)
    found = {row["id"]: row for row in map(json.loads, out.strip().splitlines())}
    assert sorted(found) == sorted([a, h])
    assert found[h]["sid"] == "f" * 32 and found[h]["phase"] == "files_ready"
    assert found[h]["extra"]["info"] == {"sequence": 9, "source": "events"}


def test_list_pages(redis_client: redis.Redis, settings: Settings, bodies: list[bytes]) -> None:
    ids = [add_body_letter(redis_client, settings, body) for body in bodies[:5]]
    code, out = run("list", "-n", "2")
    assert code == 0
    assert f"(2 shown of 5; next page: --after {ids[1]})" in out
    code, out = run("list", "-n", "2", "--after", ids[1], "--json")
    assert code == 0
    assert [json.loads(line)["id"] for line in out.strip().splitlines()] == ids[2:4]
    code, out = run("list", "-n", "2", "--after", ids[3])
    assert code == 0 and ids[4] in out and "next page" not in out


def test_show_pretty_prints_the_body(redis_client: redis.Redis, settings: Settings,
                                     bodies: list[bytes]) -> None:
    c = add_handler_letter(redis_client, settings, bodies[5])
    code, out = run("show", c)
    assert code == 0, out
    assert "retries_exhausted" in out and "myapp.handlers.on_upload" in out
    assert "ValueError: boom" in out and "abc:31:7" in out
    assert '    "msgName": "cloud_recording_file_infos",' in out  # indented JSON body
    code, out = run("show", c, "--json")
    record = json.loads(out)
    assert record["body"].encode() == bodies[5] and record["kind"] == "handler"


def test_show_a_hook_letter(redis_client: redis.Redis, settings: Settings) -> None:
    h = add_hook_letter(redis_client, settings)
    code, out = run("show", h)
    assert code == 0, out
    lines = out.splitlines()
    assert any(line.split() == ["kind", "hook"] for line in lines)
    assert any(line.split() == ["sid", "f" * 32] for line in lines)
    assert any(line.split() == ["phase", "files_ready"] for line in lines)
    assert any(line.split() == ["hook", "myapp.hooks.publish"] for line in lines)
    assert '{"sequence": 9, "source": "events"}' in out
    assert "record the hook got (" in out and '      "file_name": "a.m3u8"' in out
    assert "event key" not in out and "received" not in out


def test_show_keeps_non_utf8_bodies_exactly(redis_client: redis.Redis,
                                            settings: Settings) -> None:
    b = add_body_letter(redis_client, settings, b"\xff\x00 not json", reason="not_json")
    code, out = run("show", b, "--json")
    assert json.loads(out)["body_b64"] == "/wAgbm90IGpzb24="
    code, out = run("show", "1-0")
    assert code == 1 and "no dead letter 1-0" in out


def test_requeue_body_moves_it_back_to_the_inbox(redis_client: redis.Redis,
                                                  settings: Settings,
                                                  bodies: list[bytes]) -> None:
    a = add_body_letter(redis_client, settings, bodies[0])
    b = add_body_letter(redis_client, settings, bodies[1])
    code, out = run("requeue", a)
    assert code == 0, out
    assert "1 requeued, 0 failed" in out
    assert deadletters.count(redis_client) == 1
    (entry_id, fields), = redis_client.xrange(keys.INBOX)
    entry = inbox.InboxEntry.from_stream(entry_id, fields)
    assert entry.body == bodies[0] and entry.meta.origin == f"dlq:{a}"
    assert entry.meta.remote_addr == "10.0.0.1"
    code, out = run("requeue", "--all")
    assert code == 0 and "1 requeued" in out
    assert deadletters.count(redis_client) == 0 and redis_client.xlen(keys.INBOX) == 2
    assert b in out


def test_requeue_skips_a_letter_requeued_already_without_failing(
        redis_client: redis.Redis, settings: Settings, bodies: list[bytes]) -> None:
    b = add_body_letter(redis_client, settings, bodies[0])
    h = add_handler_letter(redis_client, settings, bodies[1])
    # Another requeue (an operator, the dashboard) took the handler letter since
    # this one read it: it holds the letter's claim.
    redis_client.set(keys.requeue_claim(h), "1")
    result = CliRunner().invoke(main, ["dlq", "requeue", b, h], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{h}: skipped: requeued already (handler, by another requeue" in result.stdout
    assert "not requeued" not in result.stderr  # stderr: the log lines, no error
    assert result.stdout.splitlines()[-1] == "1 requeued, 0 failed, 1 skipped: requeued already"
    # The body went back; the handler's task was not published a second time.
    assert redis_client.xlen(keys.INBOX) == 1 and deadletters.get(redis_client, b) is None
    assert redis_client.llen(DEFAULT_QUEUE) == 0 and deadletters.get(redis_client, h) is not None


def test_requeue_fails_for_a_failure_not_for_a_skip(
        redis_client: redis.Redis, settings: Settings, bodies: list[bytes]) -> None:
    h = add_handler_letter(redis_client, settings, bodies[0])
    redis_client.set(keys.requeue_claim(h), "1")
    broken = deadletters.add(redis_client, settings.deadletter_maxlen, kind=deadletters.HANDLER,
                             reason="handler_failed", detail="", body=bodies[1], meta={},
                             key="abc:31:8", handler="")  # names no handler to re-run
    broken = broken.decode()
    code, out = run("requeue", "--all")
    assert code == 1, out
    assert f"{broken}: not requeued: dead letter {broken} is not a handler dead letter" in out
    assert "0 requeued, 1 failed, 1 skipped: requeued already" in out


def test_requeue_needs_ids_or_all(redis_client: redis.Redis) -> None:
    code, out = run("requeue")
    assert code == 2 and "--all" in out
    code, out = run("requeue", "9-9")
    assert code == 1 and "no dead letter 9-9" in out


def test_export_writes_replayable_json_lines(redis_client: redis.Redis, settings: Settings,
                                             bodies: list[bytes], tmp_path: object) -> None:
    a = add_body_letter(redis_client, settings, bodies[0])
    b = add_body_letter(redis_client, settings, b"\xff", reason="not_json")
    code, out = run("export", "-", "--all")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["id"] for r in lines] == [a, b]
    assert lines[0]["body"].encode() == bodies[0] and lines[1]["body_b64"] == "/w=="
    assert deadletters.count(redis_client) == 2  # export removes nothing
