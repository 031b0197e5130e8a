"""The recording-state fold over full simulated lifecycles of each kind.

Expected values are read straight from the generated envelopes (raw JSON), never
from the fold itself, and checked field by field.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import lifecycle
from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.builtin.fold import fold
from agora_callbacks.workers.builtin.meanings import PHASES
from agora_callbacks.workers.builtin.record import MAX_ITEMS, new_record

START = 1_700_000_000_000
SID = "5f" * 16


def run(events: list[dict[str, Any]], state: dict[str, Any] | None = None,
        **kwargs: Any) -> dict[str, Any]:
    for envelope in events:
        state = fold(state, parse_event(envelope), **kwargs)
    assert state is not None
    return state


def of_type(events: list[dict[str, Any]], *event_types: int) -> list[dict[str, Any]]:
    return [e for e in events if e["eventType"] in event_types]


def details(envelope: dict[str, Any]) -> dict[str, Any]:
    d: dict[str, Any] = envelope["payload"]["details"]
    return d


def sendts(envelope: dict[str, Any]) -> int:
    return int(envelope["payload"]["sendts"])


def common_checks(state: dict[str, Any], events: list[dict[str, Any]]) -> None:
    last = events[-1]["payload"]
    assert state["version"] == 1
    assert state["sid"] == SID
    assert state["cname"] == last["cname"]
    assert state["uid"] == last["uid"]
    assert state["event_count"] == len(events)
    assert state["event_types"] == {str(k): v for k, v in
                                    sorted(Counter(e["eventType"] for e in events).items())}
    assert state["sequences"] == {"last": len(events) - 1, "seen": [[0, len(events) - 1]],
                                  "missing": [], "gaps": [], "late": []}
    assert state["times"]["first_event_ms"] == sendts(events[0])
    assert state["times"]["last_event_ms"] == sendts(events[-1])
    assert state["times"]["exited_ms"] == sendts(of_type(events, 11)[0])
    assert state["upload"]["started"] is True
    assert state["upload"]["progress"] == 10_000
    assert state["upload"]["percent"] == 100.0
    assert state["upload"]["completed"] is True
    # JSON-ready, and equal states are equal bytes.
    assert json.loads(store.dumps(state)) == state


def test_individual_with_errors_failover_and_transcoding() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=1, with_errors=True,
                       with_failover=True, with_transcoding=True)
    state = run(events)
    common_checks(state, events)

    assert state["mode"] == "individual"
    assert state["status"]["phase"] == "exited"
    assert state["status"]["event_type"] == 11
    assert state["status"]["sequence"] == len(events) - 1
    assert state["exit"]["code"] == 0
    assert state["exit"]["meaning"].startswith("A normal exit")

    started = of_type(events, 40)
    assert len(started) == 2  # the first start and the restart after failover
    assert state["times"]["started_ms"] == sendts(started[0])
    slices = of_type(events, 42)
    assert state["times"]["slice_started_ms"] == min(details(e)["startUtcMs"] for e in slices)
    assert state["times"]["stopped_ms"] == sendts(of_type(events, 41)[0])

    # Service status from event 3, with its meaning.
    status_event = of_type(events, 3)[0]
    assert state["service_status"]["code"] == details(status_event)["status"] == 5
    assert state["service_status"]["meaning"].startswith("The first recorded file is uploaded")
    assert state["service_status"]["sequence"] == status_event["payload"]["sequence"]

    # Files: every entry of 32 backuped, complete, sorted by name.
    listed = details(of_type(events, 32)[0])["fileList"]
    assert [f["file_name"] for f in state["files"]] == sorted(f["fileName"] for f in listed)
    by_name = {f["file_name"]: f for f in state["files"]}
    for entry in listed:
        got = by_name[entry["fileName"]]
        assert got["track_type"] == entry["trackType"]
        assert got["track_meaning"] in ("Audio file.", "Video file (no audio).")
        assert got["uid"] == entry["uid"]
        assert got["playable"] is True
        assert got["mixed_all_user"] is False
        assert got["slice_start_ms"] == entry["sliceStartTime"]
        assert 32 in got["events"] and 4 in got["events"]
    assert state["upload"]["backup_used"] is True

    # Errors and warnings with their meanings.
    (error,) = state["errors"]
    raw_error = details(of_type(events, 1)[0])
    assert error["module"] == {"code": 1, "meaning": "The uploader."}
    assert error["level"] == {"code": 3, "meaning": "Medium."}
    assert error["error"] == {"code": raw_error["errorCode"],
                              "meaning": "The recording file upload fails."}
    assert error["message"] == raw_error["errorMsg"]
    assert error["fatal"] is False
    (warning,) = state["warnings"]
    assert warning["warning"]["code"] == 31
    assert warning["warning"]["meaning"].startswith("The recording service re-uploads")

    # Leave reasons decoded from the bitmask.
    (leave,) = state["leaves"]
    code = details(of_type(events, 41)[0])["leaveCode"]
    assert leave["code"] == code
    assert sum(r["bit"] for r in leave["reasons"]) == code
    assert all(r["name"] in ("SIG", "NO_USERS", "CLIENT_LEAVE") and r["meaning"]
               for r in leave["reasons"])

    # Failover: old and new uid; the record follows the new one.
    failover_event = of_type(events, 12)[0]
    (failover,) = state["failovers"]
    assert failover["new_uid"] == str(details(failover_event)["newUid"]) == state["uid"]
    assert failover["old_uid"] == failover_event["payload"]["uid"]
    assert failover["sequence"] == failover_event["payload"]["sequence"]

    # The restart after the failover resumed each stream after a discontinuity.
    resumed = [e for e in slices if details(e)["discontinueUtcMs"] < details(e)["startUtcMs"]]
    assert resumed
    assert state["interruptions"] == [
        {"stream_uid": details(e)["streamUid"], "track_type": details(e)["trackType"],
         "stopped_ms": details(e)["discontinueUtcMs"], "resumed_ms": details(e)["startUtcMs"],
         "sequence": e["payload"]["sequence"]} for e in resumed]

    # Streams: every user stopped sending at the end.
    users = {details(e)["streamUid"] for e in of_type(events, 43)}
    assert set(state["streams"]) == users
    for uid in users:
        assert state["streams"][uid]["audio"]["receiving"] is False
        assert state["streams"][uid]["video"]["receiving"] is False

    # Transcoding: partial success, the failed user and the download failure.
    completed = details(of_type(events, 81)[0])
    assert state["transcoding"]["started_ms"] == sendts(of_type(events, 80)[0])
    assert state["transcoding"]["completed"]["result"] == {
        "code": "partial_success", "meaning": "Fails to transcode some files."}
    results = {u["uid"]: u["result"]["code"] for u in state["transcoding"]["completed"]["uids"]}
    assert results == {u["uid"]: u["result"] for u in completed["uids"]}
    final = details(of_type(events, 1001)[0])
    assert state["transcoding"]["final"]["result"]["code"] == "partial_success"
    assert state["transcoding"]["final"]["files"] == sorted(f["fileName"]
                                                           for f in final["fileList"])
    (failure,) = state["transcoding"]["download_failures"]
    assert failure["files"] == details(of_type(events, 90)[0])["fileName"].split(";")
    assert state["web"] is None


def test_composite_plain() -> None:
    events = lifecycle("composite", SID, start_ms=START, seed=2)
    state = run(events)
    common_checks(state, events)
    assert state["mode"] == "composite"
    assert state["status"]["phase"] == "exited"
    assert state["errors"] == [] and state["warnings"] == [] and state["failovers"] == []
    assert state["interruptions"] == []
    assert state["upload"]["backup_used"] is False
    listed = details(of_type(events, 31)[0])["fileList"]
    assert {f["fileName"] for f in listed} == {f["file_name"] for f in state["files"]}
    assert any(f["file_name"].endswith(".mp4") for f in state["files"])
    for f in state["files"]:
        assert f["uid"] == "0" and f["mixed_all_user"] is True
        assert f["track_type"] == "audio_and_video"
    assert set(state["streams"]) == {"0"}
    assert state["transcoding"] == {"started_ms": None, "completed": None, "final": None,
                                    "download_failures": []}


def test_web_with_errors_and_failover() -> None:
    events = lifecycle("web", SID, start_ms=START, seed=3, with_errors=True,
                       with_failover=True)
    state = run(events)
    common_checks(state, events)
    assert state["mode"] == "web"
    assert state["status"]["phase"] == "exited_abnormally"
    assert state["exit"]["code"] == 1
    web = state["web"]
    assert web["started_ms"] == details(of_type(events, 70)[0])["recorderStartTime"]
    assert state["times"]["started_ms"] == sendts(of_type(events, 70)[0])
    assert state["times"]["stopped_ms"] == sendts(of_type(events, 71)[0])
    assert web["stop"]["code"] == 2
    assert web["stop"]["documented_message"] == "capability_limit"
    assert web["stop"]["meaning"] == "The web page to be recorded uses an unsupported function."
    assert web["stop"]["details"] == details(of_type(events, 71)[0])["details"]
    assert web["capability_limit"]["code"] == details(of_type(events, 72)[0])["limitType"]
    assert web["capability_limit"]["meaning"]
    assert [r["code"] for r in web["reloads"]] == ["page_load_timeout"]
    (url,) = web["rtmp"]
    assert web["rtmp"][url]["code"] == "disconnected"
    (error,) = state["errors"]
    assert error["fatal"] is True and error["module"]["code"] == 6
    # 71's file list, including the entry spelled "filename".
    names = sorted(f.get("fileName") or f.get("filename")
                   for f in details(of_type(events, 71)[0])["fileList"])
    assert [f["file_name"] for f in state["files"]] == names
    assert all(f["slice_start_ms"] == web["started_ms"] for f in state["files"])
    assert len(state["failovers"]) == 1


def test_web_plain_ends_exited_with_ok_stop() -> None:
    events = lifecycle("web", SID, start_ms=START, seed=4)
    state = run(events)
    common_checks(state, events)
    assert state["status"]["phase"] == "exited"
    assert state["web"]["stop"]["code"] == 0
    assert state["web"]["stop"]["meaning"] == "Normal, the user stops the recording."
    assert state["web"]["rtmp"][next(iter(state["web"]["rtmp"]))]["code"] == "disconnected"
    assert state["errors"] == []


@pytest.mark.parametrize("kind", ["individual", "composite", "web"])
def test_phases_follow_the_lifecycle(kind: str) -> None:
    events = lifecycle(kind, SID, start_ms=START, seed=5)  # type: ignore[arg-type]
    phases = []
    state = None
    for envelope in events:
        state = fold(state, parse_event(envelope))
        if not phases or phases[-1] != state["status"]["phase"]:
            phases.append(state["status"]["phase"])
    assert phases == ["starting", "recording", "stopped", "uploaded", "exited"]


def test_gap_then_late_event() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=6)
    start = of_type(events, 40)[0]
    held = start["payload"]["sequence"]
    state = None
    for envelope in events:
        seq = envelope["payload"]["sequence"]
        if seq == held:
            continue
        gap = (held, held) if seq == held + 1 else None
        state = fold(state, parse_event(envelope), gap=gap)
    assert state is not None
    assert state["sequences"]["missing"] == [held]
    assert state["sequences"]["gaps"] == [{"first": held, "last": held,
                                           "before_sequence": held + 1}]
    assert state["times"]["started_ms"] is None
    assert state["status"]["phase"] == "exited"

    state = fold(state, parse_event(start), late=True)
    assert state["sequences"]["missing"] == []
    assert state["sequences"]["late"] == [{"sequence": held, "event_type": 40}]
    assert state["sequences"]["seen"] == [[0, len(events) - 1]]
    # A late event fills in history but never moves the phase back.
    assert state["status"]["phase"] == "exited"
    assert state["times"]["started_ms"] == sendts(start)
    assert state["event_count"] == len(events)


def test_out_of_order_event_counts_as_late_even_unflagged() -> None:
    events = lifecycle("composite", SID, start_ms=START, seed=7)
    leave = of_type(events, 41)[0]
    rest = [e for e in events if e is not leave]
    state = run(rest)
    state = fold(state, parse_event(leave))
    assert state["status"]["phase"] == "exited"
    assert state["sequences"]["late"] == [{"sequence": leave["payload"]["sequence"],
                                           "event_type": 41}]
    assert len(state["leaves"]) == 1


def test_rerun_of_the_same_event_changes_nothing() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=8, with_errors=True)
    state = run(events[:-1])
    error = parse_event(of_type(events, 1)[0])
    again = fold(state, error, key="1:ignored")
    assert len(again["errors"]) == 2  # a new key: applied
    assert fold(again, error, key="1:ignored") == again
    final = fold(state, parse_event(events[-1]), key="k-exit")
    assert fold(final, parse_event(events[-1]), key="k-exit") == final


def test_fold_is_pure_and_deterministic() -> None:
    events = lifecycle("web", SID, start_ms=START, seed=9, with_failover=True)
    half = run(events[: len(events) // 2])
    snapshot = store.dumps(half)
    one = run(events[len(events) // 2:], state=half)
    two = run(events[len(events) // 2:], state=json.loads(snapshot))
    assert store.dumps(half) == snapshot
    assert store.dumps(one) == store.dumps(two)
    assert store.dumps(one) == store.dumps(run(events))


def test_exit_is_terminal_for_later_events() -> None:
    events = lifecycle("composite", SID, start_ms=START, seed=10)
    uploaded = dict(of_type(events, 31)[0])
    uploaded["payload"] = {**uploaded["payload"], "sequence": len(events)}
    state = fold(run(events), parse_event(uploaded))
    assert state["status"]["phase"] == "exited"
    assert state["sequences"]["last"] == len(events)


def test_long_lists_stay_bounded() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=11, with_errors=True)
    warning = of_type(events, 2)[0]
    state = None
    for n in range(MAX_ITEMS + 50):
        copy = {**warning, "payload": {**warning["payload"], "sequence": n}}
        state = fold(state, parse_event(copy))
    assert state is not None
    assert len(state["warnings"]) == MAX_ITEMS
    assert state["warnings"][0]["sequence"] == 50
    assert state["dropped"] == {"warnings": 50}


def test_unknown_and_other_product_events_are_counted_only() -> None:
    events = lifecycle("composite", SID, start_ms=START, seed=12)
    unknown = {**events[0], "eventType": 999,
               "payload": {**events[0]["payload"], "details": {"msgName": "new_thing"}}}
    state = fold(None, parse_event(unknown))
    assert state["event_types"] == {"999": 1}
    assert state["status"]["phase"] == "unknown"
    assert json.loads(store.dumps(state)) == state


def test_late_event_does_not_move_a_running_phase_back() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=13)
    start = of_type(events, 40)[0]
    leave = of_type(events, 41)[0]
    before_leave = [e for e in events if e["payload"]["sequence"] <= leave["payload"]["sequence"]
                    and e is not start]
    state = run(before_leave)
    assert state["status"]["phase"] == "stopped"
    state = fold(state, parse_event(start), late=True)
    assert state["status"]["phase"] == "stopped"
    assert state["status"]["sequence"] == leave["payload"]["sequence"]
    assert state["times"]["started_ms"] == sendts(start)
    # Stream states are "current" fields too: a late 43 does not overwrite them.
    first_audio = of_type(events, 43)[0]
    uid = details(first_audio)["streamUid"]
    assert state["streams"][uid]["audio"]["receiving"] is False
    state = fold(state, parse_event(first_audio), key="replayed-43", late=True)
    assert state["streams"][uid]["audio"]["receiving"] is False


def test_readme_documents_every_phase_and_field(project_root: Path) -> None:
    readme = (project_root / "README.md").read_text()
    section = readme[readme.index("### The recording record"):]
    section = section[:section.index("\n### ", 1)]
    for phase in PHASES:
        assert phase == "unknown" or f"`{phase}`" in section, phase
    for name in new_record("x"):
        assert name in ("version", "sid", "recent_keys") or f"`{name}`" in section, name


def test_snapshots_are_kept_in_arrival_order_and_bounded() -> None:
    events = lifecycle("individual", SID, start_ms=START, seed=14)
    base = of_type(events, 40)[0]
    state = None
    for n in range(MAX_ITEMS + 5):
        snap = {**base, "eventType": 45, "payload": {
            **base["payload"], "sequence": n, "serviceType": 1,
            "details": {"msgName": "recorder_snapshot_file", "fileName": f"p/{999 - n}.jpg"}}}
        state = fold(state, parse_event(snap))
    assert state is not None
    assert state["snapshots"][0] == f"p/{999 - 5}.jpg"
    assert state["snapshots"][-1] == f"p/{999 - MAX_ITEMS - 4}.jpg"
    assert state["dropped"] == {"snapshots": 5}
