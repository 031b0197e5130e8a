"""``agora-callbacks replay``: files (export or raw bodies) and dead letters."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from click.testing import CliRunner

from agora_callbacks import deadletters, inbox, keys
from agora_callbacks.cli import main
from agora_callbacks.settings import Settings
from agora_callbacks.simulate.lifecycles import encode, lifecycle
from agora_callbacks.workers import hook_runs
from agora_callbacks.workers.ordering import Failure

START = 1_700_000_000_000


def run(*args: str, input: bytes | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["replay", *args], input=input, catch_exceptions=False)
    return result.exit_code, result.output


def stored(client: redis.Redis) -> list[inbox.InboxEntry]:
    return [inbox.InboxEntry.from_stream(i, f) for i, f in client.xrange(keys.INBOX)]


def test_help() -> None:
    code, out = run("--help")
    assert code == 0 and "--from-dlq" in out


def test_raw_bodies_file_byte_for_byte(redis_client: redis.Redis, tmp_path: Path) -> None:
    bodies = [encode(e) for e in lifecycle("web", "e" * 32, start_ms=START)]
    bodies[2] = bodies[2].replace(b'{"noticeId"', b'{ "noticeId"')  # odd spacing kept as is
    path = tmp_path / "bodies.txt"
    path.write_bytes(b"\n".join(bodies) + b"\n\n")
    code, out = run(str(path), "--dry-run")
    assert code == 0 and f"{len(bodies)} bodies would be replayed" in out
    assert redis_client.xlen(keys.INBOX) == 0
    code, out = run(str(path))
    assert code == 0, out
    entries = stored(redis_client)
    assert [e.body for e in entries] == bodies
    assert {e.meta.origin for e in entries} == {f"replay:{path}"}
    assert {e.meta.signature for e in entries} == {"replay"}


def test_export_file_round_trip(redis_client: redis.Redis, settings: Settings,
                                tmp_path: Path) -> None:
    good = encode(lifecycle("individual", "d" * 32, start_ms=START)[0])
    for body, reason in ((good, "stale"), (b"\xfe\xff", "not_json")):
        deadletters.add(redis_client, settings.deadletter_maxlen, kind=deadletters.BODY,
                        reason=reason, detail="", body=body, meta={})
    export = tmp_path / "dead.jsonl"
    result = CliRunner().invoke(main, ["dlq", "export", str(export), "--all"])
    assert result.exit_code == 0, result.output
    code, out = run(str(export))
    assert code == 0 and "2 bodies replayed" in out
    assert [e.body for e in stored(redis_client)] == [good, b"\xfe\xff"]


def test_stdin(redis_client: redis.Redis) -> None:
    body = encode(lifecycle("composite", "c" * 32, start_ms=START)[0])
    code, out = run("-", input=body + b"\n")
    assert code == 0, out
    (entry,) = stored(redis_client)
    assert entry.body == body and entry.meta.origin == "replay:stdin"


def test_from_dead_letters(redis_client: redis.Redis, settings: Settings) -> None:
    events = [encode(e) for e in lifecycle("composite", "b" * 32, start_ms=START)]

    def add(kind: str, body: bytes) -> str:
        i = deadletters.add(redis_client, settings.deadletter_maxlen, kind=kind,
                            reason="x", detail="", body=body, meta={})
        return i.decode() if isinstance(i, bytes) else str(i)

    a, b = add(deadletters.BODY, events[0]), add(deadletters.BODY, events[1])
    h = add(deadletters.HANDLER, events[2])
    code, out = run("--from-dlq", a)
    assert code == 0 and "1 dead letter(s) replayed" in out
    assert [e.meta.origin for e in stored(redis_client)] == [f"dlq:{a}"]
    code, out = run("--from-dlq", "--all", "--dry-run")
    assert code == 0 and "1 dead letter(s) would be replayed, 1 skipped" in out
    code, out = run("--from-dlq", "--all")
    assert code == 0 and f"dlq requeue {h}" in out
    assert [e.body for e in stored(redis_client)] == events[:2]
    assert [d.id for d in deadletters.list_(redis_client)] == [h]
    assert b not in json.dumps([d.id for d in deadletters.list_(redis_client)])


def add_hook_letter(client: redis.Redis, settings: Settings) -> str:
    """A hook dead letter as a worker writes it: its body is a record, not an event."""
    sid = "a" * 32
    run_ = hook_runs.HookRun(sid=sid, phase="finished", info={}, name="myapp.hooks.done",
                             record={"sid": sid, "event_count": 12}, task_id="t-1")
    assert hook_runs.claim(client, run_, 60)
    return hook_runs.record_outcome(client, run_, Failure("handler_failed", "tb", "E: x"),
                                    maxlen=settings.deadletter_maxlen, ttl_s=60)


def test_a_hook_letter_is_never_injected(redis_client: redis.Redis, settings: Settings,
                                         tmp_path: Path) -> None:
    good = encode(lifecycle("individual", "d" * 32, start_ms=START)[0])
    deadletters.add(redis_client, settings.deadletter_maxlen, kind=deadletters.BODY,
                    reason="stale", detail="", body=good, meta={})
    hook = add_hook_letter(redis_client, settings)
    export = tmp_path / "dead.jsonl"
    result = CliRunner().invoke(main, ["dlq", "export", str(export), "--all"])
    assert result.exit_code == 0 and len(export.read_text().splitlines()) == 2

    code, out = run(str(export), "--dry-run")
    assert code == 0 and "1 bodies would be replayed" in out and "1 skipped" in out
    code, out = run(str(export))
    assert code == 0, out
    assert f"{hook}: skipped (hook dead letter: its body is a recording's record" in out
    assert f"1 bodies replayed from {export} into the inbox, 1 skipped" in out
    assert [e.body for e in stored(redis_client)] == [good]

    code, out = run("--from-dlq", hook)
    assert code == 1 and f"{hook}: skipped (hook dead letter" in out
    assert len(stored(redis_client)) == 1 and deadletters.get(redis_client, hook) is not None


def test_usage_errors(redis_client: redis.Redis, tmp_path: Path) -> None:
    assert run()[0] == 2
    assert run("--from-dlq")[0] == 2
    assert run("a", "b")[0] == 2
    code, out = run(str(tmp_path / "missing.jsonl"))
    assert code == 1 and "cannot read" in out
