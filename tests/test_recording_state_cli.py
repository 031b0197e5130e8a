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
