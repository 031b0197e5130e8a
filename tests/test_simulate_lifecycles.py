"""The simulated recording lifecycles: shape, order, determinism, options."""

from __future__ import annotations

import time
from typing import Any

import pytest

from agora_callbacks.schemas import DETAILS_TYPES, parse_event
from agora_callbacks.simulate.lifecycles import (
    EVENT_TYPES,
    KINDS,
    PRODUCT_ID,
    encode,
    lifecycle,
    mixed_kinds,
    new_sid,
)

START = 1_700_000_000_000
OPTIONS = [
    {},
    {"with_errors": True},
    {"with_failover": True},
    {"with_errors": True, "with_failover": True, "with_transcoding": True},
]


def types(events: list[dict[str, Any]]) -> list[int]:
    return [e["eventType"] for e in events]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options", OPTIONS)
def test_envelopes_are_complete_and_in_sequence(kind: str, options: dict[str, bool]) -> None:
    sid = new_sid()
    events = lifecycle(kind, sid, start_ms=START, seed=7, **options)  # type: ignore[arg-type]
    assert [e["payload"]["sequence"] for e in events] == list(range(len(events)))
    sendts = [e["payload"]["sendts"] for e in events]
    assert sendts == sorted(sendts) and sendts[0] == START
    notice_ids = {e["noticeId"] for e in events}
    assert len(notice_ids) == len(events)
    for e in events:
        assert e["productId"] == PRODUCT_ID
        assert e["notifyMs"] > e["payload"]["sendts"]
        payload = e["payload"]
        assert payload["sid"] == sid
        assert set(payload) == {"cname", "uid", "sid", "sequence", "sendts", "serviceType",
                                "details"}
        assert isinstance(payload["uid"], str)
        msg_name, service_type = EVENT_TYPES[e["eventType"]]
        assert payload["details"]["msgName"] == msg_name
        assert payload["serviceType"] == service_type
        assert e.get("sid", sid) == sid
    # Starts with the uploader, ends with the session's exit, once.
    assert types(events)[0] == 30 and types(events)[-1] == 11
    assert types(events).count(11) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_same_arguments_same_events_other_seed_other_events(kind: str) -> None:
    sid = "0" * 32
    a = lifecycle(kind, sid, start_ms=START, seed=1)  # type: ignore[arg-type]
    assert a == lifecycle(kind, sid, start_ms=START, seed=1)  # type: ignore[arg-type]
    b = lifecycle(kind, sid, start_ms=START, seed=2)  # type: ignore[arg-type]
    assert [e["noticeId"] for e in a] != [e["noticeId"] for e in b]


def test_without_start_the_recording_just_ended() -> None:
    events = lifecycle("composite", new_sid())
    now = time.time() * 1000
    last = max(e["notifyMs"] for e in events)
    assert now - 5_000 < last <= now + 1_000
    assert events[0]["payload"]["sendts"] < last - 60_000  # at least a minute long


def test_individual_records_each_user_and_track_and_uploads_them() -> None:
    events = lifecycle("individual", new_sid(), start_ms=START, seed=3)
    slices = [e["payload"]["details"] for e in events if e["eventType"] == 42]
    assert {(s["streamUid"], s["trackType"]) for s in slices} == {
        (u, t) for u in {s["streamUid"] for s in slices} for t in ("audio", "video")
    }
    assert len({s["streamUid"] for s in slices}) == 2
    assert all(s["mixedAllUser"] is False for s in slices)
    uploaded = [e for e in events if e["eventType"] == 31]
    assert len(uploaded) == 1
    files = uploaded[0]["payload"]["details"]["fileList"]
    assert len(files) == 4
    assert {f["uid"] for f in files} == {s["streamUid"] for s in slices}
    assert all(set(f) == {"fileName", "trackType", "uid", "mixedAllUser", "isPlayable",
                          "sliceStartTime"} for f in files)
    t = types(events)
    assert t.index(40) < t.index(42) < t.index(4) < t.index(41) < t.index(31) < t.index(11)
    progress = [e["payload"]["details"]["progress"] for e in events if e["eventType"] == 33]
    assert progress == sorted(progress) and progress[-1] == 10_000


def test_composite_files_are_mixed_with_an_mp4() -> None:
    events = lifecycle("composite", new_sid(), start_ms=START, seed=3)
    files = next(e for e in events if e["eventType"] == 31)["payload"]["details"]["fileList"]
    assert {f["uid"] for f in files} == {"0"}
    assert all(f["mixedAllUser"] is True for f in files)
    assert {f["fileName"].rsplit(".", 1)[1] for f in files} == {"mp4", "m3u8"}


def test_web_recording_events_and_filename_quirk() -> None:
    events = lifecycle("web", new_sid(), start_ms=START, seed=3)
    t = types(events)
    assert t.index(70) < t.index(100) < t.index(73) < t.index(71) < t.index(31) < t.index(11)
    stopped = next(e for e in events if e["eventType"] == 71)["payload"]["details"]
    assert stopped["code"] == 0 and stopped["message"] == "ok"
    keys = [set(f) & {"fileName", "filename"} for f in stopped["fileList"]]
    assert {"fileName"} in keys and {"filename"} in keys
    uploaded = next(e for e in events if e["eventType"] == 31)["payload"]["details"]
    assert uploaded == {"msgName": "uploaded", "status": 0}
    statuses = [e["payload"]["details"]["status"] for e in events if e["eventType"] == 100]
    assert statuses[:2] == ["connecting", "publishing"] and statuses[-1] == "disconnected"


@pytest.mark.parametrize("kind", ["individual", "composite"])
def test_errors_warn_fail_and_back_up(kind: str) -> None:
    events = lifecycle(kind, new_sid(), start_ms=START, seed=4, with_errors=True)  # type: ignore[arg-type]
    t = types(events)
    assert 1 in t and 2 in t and 3 in t
    assert 32 in t and 31 not in t
    error = next(e for e in events if e["eventType"] == 1)["payload"]["details"]
    assert set(error) == {"msgName", "module", "errorLevel", "errorCode", "stat", "errorMsg"}
    status = next(e for e in events if e["eventType"] == 3)["payload"]["details"]
    assert status["recordingMode"] == (1 if kind == "composite" else 0)


def test_web_errors_stop_on_capability_limit_and_exit_abnormally() -> None:
    events = lifecycle("web", new_sid(), start_ms=START, seed=4, with_errors=True)
    t = types(events)
    assert t.index(72) < t.index(71)
    stopped = next(e for e in events if e["eventType"] == 71)["payload"]["details"]
    assert (stopped["code"], stopped["message"]) == (2, "capability_limit")
    assert events[-1]["payload"]["details"]["exitStatus"] == 1


@pytest.mark.parametrize("kind", KINDS)
def test_failover_switches_uid_and_restarts_the_recorder(kind: str) -> None:
    events = lifecycle(kind, new_sid(), start_ms=START, seed=5, with_failover=True)  # type: ignore[arg-type]
    i = types(events).index(12)
    new_uid = events[i]["payload"]["details"]["newUid"]
    assert isinstance(new_uid, int)
    old_uid = events[0]["payload"]["uid"]
    assert all(e["payload"]["uid"] == old_uid for e in events[: i + 1])
    assert all(e["payload"]["uid"] == str(new_uid) for e in events[i + 1:])
    assert events[i + 1]["eventType"] == (70 if kind == "web" else 40)
    if kind != "web":
        resumed = [e["payload"]["details"] for e in events[i + 1:] if e["eventType"] == 42]
        assert resumed and all(d["discontinueUtcMs"] < d["startUtcMs"] for d in resumed)


def test_transcoding_results_after_upload() -> None:
    ok = lifecycle("individual", new_sid(), start_ms=START, with_transcoding=True)
    t = types(ok)
    assert t.index(31) < t.index(80) < t.index(81) < t.index(1001) < t.index(11)
    assert next(e for e in ok if e["eventType"] == 1001)["payload"]["details"]["result"] == \
        "total_success"
    bad = lifecycle("individual", new_sid(), start_ms=START, with_transcoding=True,
                    with_errors=True)
    assert 90 in types(bad)
    assert next(e for e in bad if e["eventType"] == 81)["payload"]["details"]["result"] == \
        "partial_success"


def test_encode_is_compact_json_bytes() -> None:
    body = encode(lifecycle("web", new_sid(), start_ms=START)[0])
    assert body.startswith(b'{"noticeId":"') and b": " not in body


def test_mixed_kinds_cover_every_kind() -> None:
    assert set(mixed_kinds(3, seed=9)) == set(KINDS)
    assert mixed_kinds(10, seed=9) == mixed_kinds(10, seed=9)


@pytest.mark.parametrize("kind", KINDS)
def test_every_generated_event_passes_the_schemas_cleanly(kind: str) -> None:
    for options in OPTIONS:
        for e in lifecycle(kind, new_sid(), seed=6, **options):  # type: ignore[arg-type]
            event = parse_event(encode(e))
            assert event.sequence == e["payload"]["sequence"]
            assert event.sid == e["payload"]["sid"]
            assert event.event_type in DETAILS_TYPES
            assert isinstance(event.details, DETAILS_TYPES[event.event_type])
            assert not event.problems, (e["eventType"], event.problems)
            assert not event.details.extra and not event.payload_extra


def test_the_filename_quirk_reads_as_file_name() -> None:
    events = lifecycle("web", new_sid(), start_ms=START)
    stopped = parse_event(encode(next(e for e in events if e["eventType"] == 71)))
    names = [f.file_name for f in stopped.details.file_list]  # type: ignore[attr-defined]
    assert len(names) == 2 and all(names)
