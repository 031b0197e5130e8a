"""``agora-callbacks recording SID [--json]``."""

from __future__ import annotations

import json
from typing import Any

import redis
from click.testing import CliRunner

from agora_callbacks.cli import main
from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import lifecycle
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import fold

SID = "c0ffee00" * 4


def folded(kind: str, **options: Any) -> dict[str, Any]:
    state = None
    for envelope in lifecycle(kind, SID, start_ms=1_700_000_000_000, seed=21,  # type: ignore[arg-type]
                              **options):
        state = fold(state, parse_event(envelope))
    assert state is not None
    return state


def invoke(*args: str) -> Any:
    return CliRunner().invoke(main, ["recording", *args], catch_exceptions=False)


def test_json_prints_the_stored_record(redis_client: redis.Redis) -> None:
    record = folded("individual", with_errors=True, with_failover=True, with_transcoding=True)
    store.save(redis_client, SID, record, ttl_s=60)
    result = invoke(SID, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == record


def test_summary_gives_meanings(redis_client: redis.Redis) -> None:
    record = folded("individual", with_errors=True, with_failover=True, with_transcoding=True)
    store.save(redis_client, SID, record, ttl_s=60)
    result = invoke(SID)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"Recording {SID}\n")
    assert "Status: exited: The recording service ended its tasks and exited normally." in out
    assert "mode individual" in out
    assert f"recorder uid {record['uid']}" in out
    assert "error 47 (The recording file upload fails.)" in out
    assert "warning 31 (The recording service re-uploads the slice file" in out
    assert "(some files through Agora Cloud Backup)" in out
    assert f"Files ({len(record['files'])}):" in out
    for f in record["files"]:
        assert f["file_name"] in out
    leave = record["leaves"][0]
    assert f"code {leave['code']}: " in out
    for reason in leave["reasons"]:
        assert reason["meaning"] in out
    failover = record["failovers"][0]
    assert f"uid {failover['old_uid']} -> {failover['new_uid']}" in out
    assert "completed: partial_success (Fails to transcode some files.)" in out
    first = record["interruptions"][0]["sequence"]
    assert f"Interruptions (slices missing between):\n  seq {first}" in out
    assert f"Sequences: last {record['sequences']['last']}; missing none" in out


def test_summary_of_a_web_recording(redis_client: redis.Redis) -> None:
    store.save(redis_client, SID, folded("web", with_errors=True), ttl_s=60)
    out = invoke(SID).stdout
    assert "mode web" in out
    assert "Status: exited_abnormally" in out
    assert "stopped: 2 (The web page to be recorded uses an unsupported function.)" in out
    assert "CDN rtmp://" in out and "disconnected" in out


def test_unknown_recording_exits_1(redis_client: redis.Redis) -> None:
    result = invoke("feedface" * 4)
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no record of recording feedface")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_help() -> None:
    result = CliRunner().invoke(main, ["recording", "--help"])
    assert result.exit_code == 0
    assert "--json" in result.output
    assert "recording" in CliRunner().invoke(main, ["--help"]).output


def test_summary_lists_the_lifecycle_phases_fired(redis_client: redis.Redis) -> None:
    record = folded("composite")
    record["lifecycle"] = {"fired": {}, "pending": [], "marks": {}, "reconcile": {}}
    store.save(redis_client, SID, record, ttl_s=60)
    assert "Lifecycle: no phase fired yet\n" in invoke(SID).stdout
    record["lifecycle"]["fired"] = {
        "started": {"at_ms": 1, "source": "events"},
        "files_ready": {"at_ms": 2, "source": "query"},
        "failed": {"at_ms": 2, "source": "events", "reason": "upload_failed"}}
    store.save(redis_client, SID, record, ttl_s=60)
    assert ("Lifecycle: started, files_ready (from query), failed (upload_failed)\n"
            in invoke(SID).stdout)


def _letter(client: redis.Redis, raw: bytes, *, kind: str = "body", reason: str = "invalid",
            handler: str = "", exception: str = "", **extra: Any) -> str:
    from agora_callbacks import deadletters

    entry = deadletters.add(client, 1000, kind=kind, reason=reason, detail="", body=raw,
                            meta={}, handler=handler, exception=exception, extra=extra or None)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def test_summary_lists_the_recordings_dead_letters_newest_first(
        redis_client: redis.Redis) -> None:
    from workers_support import body

    store.save(redis_client, SID, folded("individual"), ttl_s=60)
    handler = _letter(redis_client, body(SID, 7, 31), kind="handler", reason="handler_failed",
                      handler="app.on_upload", exception="ValueError: no bucket")
    _letter(redis_client, body("feedface" * 4, 3))  # another recording's
    hook = _letter(redis_client, b"{}", kind="hook", reason="hook_failed",
                   handler="app.publish", exception="TimeoutError: cdn", sid=SID,
                   phase="files_ready")
    out = invoke(SID).stdout
    section = out[out.index("Dead letters (newest first):"):].splitlines()
    assert section[1].startswith(f"  {hook} ")
    assert "hook hook_failed (phase files_ready, app.publish): TimeoutError: cdn" in section[1]
    assert section[2].startswith(f"  {handler} ")
    assert ("handler handler_failed (seq 7, app.on_upload): ValueError: no bucket"
            in section[2])
    assert len(section) == 3  # not the other recording's letter


def test_summary_says_when_a_recording_has_no_dead_letter(redis_client: redis.Redis) -> None:
    from workers_support import body

    store.save(redis_client, SID, folded("individual"), ttl_s=60)
    _letter(redis_client, body("feedface" * 4, 3))
    out = invoke(SID).stdout
    assert "Dead letters: none" in out


def test_summary_shows_ten_dead_letters_and_points_to_the_rest(
        redis_client: redis.Redis) -> None:
    from workers_support import body

    from agora_callbacks.cli.recording import DEAD_LETTERS_SHOWN

    store.save(redis_client, SID, folded("individual"), ttl_s=60)
    ids = [_letter(redis_client, body(SID, n)) for n in range(DEAD_LETTERS_SHOWN + 2)]
    out = invoke(SID).stdout
    section = out[out.index("Dead letters (newest first):"):].splitlines()[1:]
    assert [row.split()[0] for row in section[:-1]] == ids[::-1][:DEAD_LETTERS_SHOWN]
    assert section[-1] == f"  (maybe more: agora-callbacks dlq list --sid {SID})"
