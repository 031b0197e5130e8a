"""schemas: envelope, payload, every details type, strictness and tolerance."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import time
from typing import Any

import pytest

from agora_callbacks.errors import AgoraCallbacksError
from agora_callbacks.schemas import (
    DETAILS_TYPES,
    MAX_DEPTH,
    Details,
    Event,
    InvalidEvent,
    loader,
    parse_event,
)
from agora_callbacks.schemas import enums as e
from agora_callbacks.schemas.loader import builder
from agora_callbacks.schemas.parse import text_too_deep


def body(event_type: int, details: Any = None, *, envelope: dict[str, Any] | None = None,
         **payload: Any) -> dict[str, Any]:
    """A Cloud Recording body: a valid envelope and payload around ``details``."""
    full_payload: dict[str, Any] = {"cname": "room", "uid": "527841", "sid": "sid-1",
                                    "sequence": 4, "sendts": 1700000000123, "serviceType": 0}
    if details is not None:
        full_payload["details"] = details
    full_payload.update(payload)
    out: dict[str, Any] = {"noticeId": "n-1", "productId": 3, "eventType": event_type,
                           "notifyMs": 1700000000456, "payload": full_payload}
    out.update(envelope or {})
    return out


def parse(data: dict[str, Any]) -> Event:
    """Parse from bytes, as the workers do."""
    return parse_event(json.dumps(data).encode())


def invalid(raw: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        parse_event(raw)
    return caught.value


# --- one body per event type, built from its field list --------------------------

FILE_31 = {"fileName": "a.m3u8", "trackType": "audio_and_video", "uid": "0",
           "mixedAllUser": True, "isPlayable": False, "sliceStartTime": 1619172632080}

CASES: list[tuple[int, dict[str, Any], dict[str, Any]]] = [
    (1, {"msgName": "cloud_recording_error", "module": 2, "errorLevel": 5, "errorCode": 52,
         "stat": 1, "errorMsg": "start timeout"},
     {"module": e.Module.CLOUD_RECORDING, "error_level": e.ErrorLevel.FATAL, "error_code": 52,
      "stat": 1, "error_msg": "start timeout", "error": e.CloudRecordingErrorCode.START_TIMEOUT}),
    (2, {"msgName": "cloud_recording_warning", "module": 1, "warnCode": 32},
     {"module": e.Module.UPLOADER, "warn_code": 32,
      "warning": e.UploadWarningCode.REUPLOAD_TO_BACKUP}),
    (3, {"msgName": "cloud_recording_status_update", "status": 5, "recordingMode": 1,
         "fileList": "sid_room.m3u8"},
     {"status": e.RecordingStatus.FIRST_FILE_UPLOADED, "recording_mode": e.RecordingMode.COMPOSITE,
      "file_list": "sid_room.m3u8"}),
    (4, {"msgName": "cloud_recording_file_infos", "fileList": "sid_room.m3u8"},
     {"file_list": "sid_room.m3u8"}),
    (11, {"msgName": "session_exit", "exitStatus": 1}, {"exit_status": e.ExitStatus.ABNORMAL}),
    (12, {"msgName": "session_failover", "newUid": 1357}, {"new_uid": 1357}),
    (30, {"msgName": "uploader_started", "status": 0}, {"status": 0}),
    (31, {"msgName": "uploaded", "status": 0, "fileList": [FILE_31]},
     {"status": 0, "file_list": ({"file_name": "a.m3u8", "track_type": e.TrackType.AUDIO_AND_VIDEO,
                                  "uid": "0", "mixed_all_user": True, "is_playable": False,
                                  "slice_start_time": 1619172632080},)}),
    (32, {"msgName": "backuped", "status": 1, "fileList": [FILE_31, FILE_31]},
     {"status": 1, "file_list": 2}),
    (33, {"msgName": "uploading_progress", "progress": 4200}, {"progress": 4200}),
    (40, {"msgName": "recorder_started", "status": 0}, {"status": 0}),
    (41, {"msgName": "recorder_leave", "leaveCode": 6},
     {"leave_code": 6, "leave_reasons": (e.LeaveReason.SIG, e.LeaveReason.NO_USERS)}),
    (42, {"msgName": "recorder_slice_start", "startUtcMs": 1700000001000,
          "discontinueUtcMs": 1700000000500, "mixedAllUser": False, "streamUid": "42",
          "trackType": "video"},
     {"start_utc_ms": 1700000001000, "discontinue_utc_ms": 1700000000500,
      "mixed_all_user": False, "stream_uid": "42", "track_type": e.TrackType.VIDEO}),
    (43, {"msgName": "recorder_audio_stream_state_changed", "streamUid": "7", "state": 1,
          "UtcMs": 1700000002000},
     {"stream_uid": "7", "state": e.StreamState.NOT_RECEIVING, "utc_ms": 1700000002000}),
    (44, {"msgName": "recorder_video_stream_state_changed", "streamUid": "0", "state": 0,
          "UtcMs": 1700000003000},
     {"stream_uid": "0", "state": e.StreamState.RECEIVING, "utc_ms": 1700000003000}),
    (45, {"msgName": "recorder_snapshot_file", "fileName": "prefix/shot_1.jpg"},
     {"file_name": "prefix/shot_1.jpg"}),
    (60, {"msgName": "vod_started", "aliVodInfo": {"videoId": "v-99"}},
     {"ali_vod_info": {"video_id": "v-99"}}),
    (61, {"msgName": "vod_triggered"}, {}),
    (70, {"msgName": "web_recorder_started", "recorderStartTime": 1627613641393},
     {"recorder_start_time": 1627613641393}),
    (71, {"msgName": "web_recorder_stopped", "code": 4, "message": "page_load_timeout",
          "details": "timed out", "fileList": [{"fileName": "w.mp4", "sliceStartTime": 5}]},
     {"code": e.WebRecorderStopCode.PAGE_LOAD_TIMEOUT, "message": "page_load_timeout",
      "details": "timed out", "file_list": ({"file_name": "w.mp4", "slice_start_time": 5},)}),
    (72, {"msgName": "web_recorder_capability_limit", "limitType": "WebGL"},
     {"limit_type": e.LimitType.WEBGL}),
    (73, {"msgName": "web_recorder_reload", "reason": "audio_silence"},
     {"reason": e.ReloadReason.AUDIO_SILENCE}),
    (80, {"msgName": "transcoder_started"}, {}),
    (81, {"msgName": "transcoder_completed", "result": "partial_success",
          "uids": [{"uid": "12", "result": "success", "fileList": [{"fileName": "12.mp4"}]},
                   {"uid": 13, "result": "fail"}]},
     {"result": e.TranscodeResult.PARTIAL_SUCCESS,
      "uids": ({"uid": "12", "result": e.UidTranscodeResult.SUCCESS,
                "file_list": ({"file_name": "12.mp4"},)},
               {"uid": "13", "result": e.UidTranscodeResult.FAIL, "file_list": None})}),
    (90, {"msgName": "download_failed", "vendor": 2, "region": 3, "bucket": "bkt",
          "fileName": "a.m3u8;a_1.ts;"},
     {"vendor": 2, "region": 3, "bucket": "bkt", "file_name": "a.m3u8;a_1.ts;",
      "file_names": ("a.m3u8", "a_1.ts")}),
    (100, {"msgName": "rtmp_publish_status", "rtmpUrl": "rtmp://cdn/x", "status": "onhold"},
     {"rtmp_url": "rtmp://cdn/x", "status": e.RtmpPublishStatus.ONHOLD}),
    (1001, {"msgName": "postpone_transcode_final_result", "result": "total_success",
            "fileList": [{"fileName": "f1.mp4"}, {"fileName": "f2.mp4"}]},
     {"result": e.FinalTranscodeResult.TOTAL_SUCCESS,
      "file_list": ({"file_name": "f1.mp4"}, {"file_name": "f2.mp4"})}),
]


def check(obj: Any, expected: Any) -> None:
    """``obj`` (a model, tuple of models or value) holds what ``expected`` describes: a
    dict of attribute -> expected, a tuple of those, an int for a tuple's length."""
    if isinstance(expected, dict):
        for attr, want in expected.items():
            check(getattr(obj, attr), want)
    elif isinstance(expected, tuple) and isinstance(obj, tuple):
        assert len(obj) == len(expected)
        for item, want in zip(obj, expected, strict=True):
            check(item, want)
    elif isinstance(expected, int) and isinstance(obj, tuple):
        assert len(obj) == expected
    else:
        assert obj == expected
        assert type(obj) is type(expected) or expected is None


def test_every_documented_event_type_has_a_case() -> None:
    documented = {1, 2, 3, 4, 11, 12, 30, 31, 32, 33, 40, 41, 42, 43, 44, 45, 60, 61, 70,
                  71, 72, 73, 80, 81, 90, 100, 1001}
    assert set(DETAILS_TYPES) == documented
    assert {case[0] for case in CASES} == documented
    assert {int(member) for member in e.EventType} == documented


@pytest.mark.parametrize(("event_type", "details", "expected"), CASES,
                         ids=[str(case[0]) for case in CASES])
def test_each_event_type_parses_to_its_values(event_type: int, details: dict[str, Any],
                                              expected: dict[str, Any]) -> None:
    event = parse(body(event_type, details))
    details_type, msg_name = DETAILS_TYPES[event_type]
    assert type(event.details) is details_type
    assert event.msg_name == details["msgName"] == msg_name
    check(event.details, expected)
    assert event.details.extra == {}
    assert event.problems == {}
    assert event.is_cloud_recording
    assert (event.notice_id, event.product_id, event.event_type) == ("n-1", 3, event_type)
    assert (event.sid, event.sequence, event.cname, event.uid) == ("sid-1", 4, "room", "527841")
    assert (event.sendts, event.notify_ms) == (1700000000123, 1700000000456)
    assert event.service_type is e.ServiceType.CLOUD_RECORDING


@pytest.mark.parametrize(("event_type", "details", "expected"), CASES,
                         ids=[str(case[0]) for case in CASES])
def test_marshmallow_alone_gives_the_same_event(
        event_type: int, details: dict[str, Any], expected: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    data = body(event_type, details)
    fast = parse(data)
    monkeypatch.setattr(loader, "FAST_PATH", False)
    assert parse(data) == fast


# --- the reference page's quirks -------------------------------------------------

def test_event_71_reads_filename_and_filename_as_file_name() -> None:
    event = parse(body(71, {"msgName": "web_recorder_stopped", "fileList": [
        {"filename": "lower.m3u8", "sliceStartTime": 1}, {"fileName": "upper.mp4"}]}))
    assert [f.file_name for f in event.details.file_list] == ["lower.m3u8", "upper.mp4"]
    assert all(f.extra == {} for f in event.details.file_list)


def test_event_100_status_is_a_string_with_a_meaning() -> None:
    for status in ("connecting", "publishing", "onhold", "disconnected"):
        details = parse(body(100, {"msgName": "rtmp_publish_status", "status": status})).details
        assert details.status == status
        assert isinstance(details.status, e.RtmpPublishStatus)
        assert e.describe(details.status)
    # a number, as the page's type says, is kept; so is a status Agora adds later
    assert parse(body(100, {"status": 2})).details.status == 2
    assert parse(body(100, {"status": "paused"})).details.status == "paused"
    assert parse(body(100, {"status": "paused"})).problems == {}


def test_file_list_is_a_string_in_3_and_4_and_objects_in_31_and_32() -> None:
    assert parse(body(3, {"fileList": "x.m3u8"})).details.file_list == "x.m3u8"
    assert parse(body(4, {"fileList": "y.m3u8"})).details.file_list == "y.m3u8"
    for event_type in (31, 32):
        files = parse(body(event_type, {"fileList": [FILE_31]})).details.file_list
        assert files[0].file_name == "a.m3u8"
    # the other shape in the wrong event is tolerated, not mistaken
    event = parse(body(4, {"fileList": [FILE_31]}))
    assert event.details.file_list is None
    assert event.problems == {"payload.details.fileList": ("Not a valid string.",)}


# --- envelope and payload ---------------------------------------------------------

def test_real_callback_from_ncs_delivery() -> None:
    raw = ('{"noticeId":"31aeb35a...","notifyMs":1596555306283,"eventType":40,"sid":"d12f...",'
           '"payload":{"serviceType":1,"uid":"1001","sequence":1,"sendts":1596555306257,'
           '"cname":"Testing2","details":{"status":0,"msgName":"recorder_started"},'
           '"sid":"d12f..."},"productId":3}')
    event = parse_event(raw)
    assert (event.notice_id, event.notify_ms, event.sid, event.sequence) == (
        "31aeb35a...", 1596555306283, "d12f...", 1)
    assert event.service_type is e.ServiceType.RECORDER
    assert event.msg_name == "recorder_started"
    assert event.details.status == 0
    assert event.raw == json.loads(raw)


def test_legacy_names_and_string_sequence() -> None:
    data = body(40, {"msgName": "recorder_started"}, sequence="12")
    data["notificationId"] = data.pop("noticeId")
    data["eventMs"] = data.pop("notifyMs")
    event = parse(data)
    assert (event.notice_id, event.notify_ms, event.sequence) == ("n-1", 1700000000456, 12)
    assert event.problems == {}


def test_current_names_win_over_legacy_ones() -> None:
    event = parse(body(40, {}, envelope={"notificationId": "old", "eventMs": 1}))
    assert (event.notice_id, event.notify_ms) == ("n-1", 1700000000456)


def test_top_level_sid_is_kept_and_payload_sid_wins() -> None:
    assert parse(body(40, {}, envelope={"sid": "top"})).sid == "sid-1"
    only_top = body(40, {}, envelope={"sid": "top"})
    del only_top["payload"]["sid"]
    assert parse(only_top).sid == "top"
    assert parse(only_top).is_cloud_recording


def test_cloud_recording_without_sid_or_sequence_is_valid_but_unordered() -> None:
    data = body(40, {"msgName": "recorder_started"})
    del data["payload"]["sid"], data["payload"]["sequence"]
    event = parse(data)
    assert (event.sid, event.sequence, event.is_cloud_recording) == (None, None, False)
    assert event.details.msg_name == "recorder_started"
    no_sequence = body(40, {})
    del no_sequence["payload"]["sequence"]
    assert not parse(no_sequence).is_cloud_recording


def test_service_scene_is_read() -> None:
    assert parse(body(40, {}, serviceScene="web_recorder")).service_scene == "web_recorder"


def test_other_products_yield_a_generic_event() -> None:
    # body A of ncs-delivery.md's test vectors: an RTC event
    raw = (b'{"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
           b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}')
    event = parse_event(raw)
    assert (event.product_id, event.event_type, event.notify_ms) == (1, 10, 1560408533119)
    assert event.product_id is e.ProductId.RTC
    assert event.notice_id == "4eb720f0-8da7-11e9-a43e-53f411c2761f"
    assert event.payload == {"a": "1", "b": 2}
    assert (event.sid, event.sequence, event.cname, event.msg_name) == (None, None, None, None)
    assert type(event.details) is Details
    assert not event.is_cloud_recording
    # body C: the same with the legacy eventMs in front
    event_c = parse_event(raw.replace(b"{", b'{"eventMs":1560408533119,', 1))
    assert event_c.notify_ms == 1560408533119
    # a product id nobody documented still flows
    assert parse(body(1, {}, envelope={"productId": 77})).product_id == 77


def test_unknown_event_type_yields_generic_details_keeping_everything() -> None:
    event = parse(body(555, {"msgName": "future_event", "newField": {"deep": [1, 2]}}))
    assert type(event.details) is Details
    assert event.msg_name == "future_event"
    assert event.details.extra == {"newField": {"deep": (1, 2)}}
    assert event.is_cloud_recording


def test_unknown_fields_are_kept_at_every_level() -> None:
    item = dict(FILE_31, fileSize=1024)
    data = body(31, {"msgName": "uploaded", "fileList": [item], "checksum": "abc"},
                envelope={"region": "eu"}, traceId="t-1")
    event = parse(data)
    assert event.extra == {"region": "eu"}
    assert event.payload_extra == {"traceId": "t-1"}
    assert event.details.extra == {"checksum": "abc"}
    assert event.details.file_list[0].extra == {"fileSize": 1024}
    assert event.problems == {}


def test_event_is_immutable() -> None:
    event = parse(body(31, {"fileList": [FILE_31], "more": {"a": [1]}}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.sid = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.details.status = 1  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.details.file_list[0].uid = "9"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        event.details.extra["more"] = 1  # type: ignore[index]
    with pytest.raises(TypeError):
        event.details.extra["more"]["a"] = 2
    with pytest.raises(TypeError):
        event.payload["sid"] = "x"  # type: ignore[index]
    assert isinstance(event.details.file_list, tuple)


def test_fast_constructor_equals_the_dataclass_init() -> None:
    for model, _ in DETAILS_TYPES.values():
        assert builder(model)({}) == model()
        assert repr(builder(model)({"msg_name": "m"})) == repr(model(msg_name="m"))
    event = parse(body(40, {"status": 1}))
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(Event)}
    assert builder(Event)(fields) == Event(**fields)
    del fields["raw"]
    with pytest.raises(TypeError):
        builder(Event)(fields)


def test_event_pickles_and_copies() -> None:
    event = parse(body(31, {"fileList": [FILE_31], "more": {"a": [1]}}, extraField=1))
    assert pickle.loads(pickle.dumps(event)) == event
    assert copy.deepcopy(event) == event
    assert copy.copy(event) == event
    error = invalid(b"[]")
    again = pickle.loads(pickle.dumps(error))
    assert (again.reason, again.messages) == (error.reason, error.messages)


def test_every_input_type_gives_the_same_event() -> None:
    data = body(42, {"msgName": "recorder_slice_start", "streamUid": "3"})
    text = json.dumps(data)
    events = [parse_event(text), parse_event(text.encode()), parse_event(bytearray(text.encode())),
              parse_event(memoryview(text.encode())), parse_event(data)]
    assert all(event == events[0] for event in events)


# --- strict where a wrong value corrupts keys, tolerant elsewhere -----------------

@pytest.mark.parametrize("sequence", ["abc", -1, 1.5, True, 2**53, [1], {}, ""])
def test_a_bad_sequence_refuses_the_event(sequence: Any) -> None:
    error = invalid(json.dumps(body(40, {}, sequence=sequence)))
    assert error.reason == "invalid_event"
    assert list(error.messages) == ["payload.sequence"]


@pytest.mark.parametrize(("field", "value", "path"), [
    ("sid", "", "payload.sid"), ("sid", 12, "payload.sid"), ("sid", ["a"], "payload.sid")])
def test_a_bad_sid_refuses_the_event(field: str, value: Any, path: str) -> None:
    assert list(invalid(body(40, {}, **{field: value})).messages) == [path]
    assert list(invalid(body(40, {}, envelope={"sid": value})).messages) == ["sid"]


@pytest.mark.parametrize(("change", "path"), [
    ({"eventType": "forty"}, "eventType"), ({"eventType": None}, "eventType"),
    ({"eventType": 4.5}, "eventType"), ({"productId": "three"}, "productId"),
    ({"payload": [1]}, "payload"), ({"payload": "x"}, "payload"),
    ({"noticeId": ""}, "noticeId"), ({"noticeId": {"a": 1}}, "noticeId")])
def test_a_bad_envelope_refuses_the_event(change: dict[str, Any], path: str) -> None:
    error = invalid(body(40, {}, envelope=change))
    assert error.reason == "invalid_event"
    assert path in error.messages


@pytest.mark.parametrize("missing", ["noticeId", "productId", "eventType", "payload"])
def test_a_missing_envelope_field_refuses_the_event(missing: str) -> None:
    data = body(40, {})
    del data[missing]
    assert invalid(data).messages[missing] == ["Missing data for required field."]


def test_numbers_as_numeric_strings_or_integral_floats_are_accepted() -> None:
    event = parse(body(12, {"newUid": "2468"}, envelope={"eventType": "12", "productId": 3.0},
                       sequence=7.0, sendts="1700000000123", uid=527841))
    assert (event.event_type, event.sequence, event.sendts) == (12, 7, 1700000000123)
    assert event.uid == "527841"
    assert event.details.new_uid == 2468
    assert event.problems == {}


def test_booleans_and_uids_are_tolerant() -> None:
    item = dict(FILE_31, mixedAllUser="false", isPlayable=1, uid=0)
    files = parse(body(31, {"fileList": [item]})).details.file_list
    assert (files[0].mixed_all_user, files[0].is_playable, files[0].uid) == (False, True, "0")


def test_a_wrong_details_value_is_tolerated_and_reported() -> None:
    # Decision (schemas/details.py): no key depends on details, so a wrong value there
    # must not lose the event. It reads None and Event.problems says why.
    event = parse(body(1, {"msgName": "cloud_recording_error", "errorCode": "abc",
                           "module": 1, "errorLevel": 4}))
    assert event.details.error_code is None
    assert event.details.module is e.Module.UPLOADER
    assert event.problems == {"payload.details.errorCode": ("Not a valid integer.",)}
    assert event.raw["payload"]["details"]["errorCode"] == "abc"


def test_a_wrong_value_deep_in_a_file_list_costs_only_that_value() -> None:
    bad = dict(FILE_31, sliceStartTime="yesterday")
    event = parse(body(31, {"fileList": [FILE_31, bad]}))
    files = event.details.file_list
    assert files[0].slice_start_time == 1619172632080
    assert (files[1].slice_start_time, files[1].file_name) == (None, "a.m3u8")
    assert event.problems == {
        "payload.details.fileList.1.sliceStartTime": ("Not a valid integer.",)}


def test_an_item_of_a_file_list_that_is_no_object_costs_only_that_item() -> None:
    other = dict(FILE_31, fileName="b.m3u8")
    event = parse(body(31, {"fileList": [FILE_31, 5, None, other]}))
    files = event.details.file_list
    assert [f.file_name for f in files] == [FILE_31["fileName"], "b.m3u8"]
    assert event.problems == {"payload.details.fileList.1": ("Not an object.",),
                              "payload.details.fileList.2": ("Not an object.",)}
    assert event.raw["payload"]["details"]["fileList"][1] == 5


def test_tolerated_payload_and_details_shapes() -> None:
    event = parse(body(31, {"fileList": "not a list", "status": 0}, cname=5, serviceType="x"))
    assert (event.cname, event.service_type, event.details.file_list) == (None, None, None)
    assert event.details.status == 0
    assert set(event.problems) == {"payload.cname", "payload.serviceType",
                                   "payload.details.fileList"}
    not_an_object = parse(body(11, ["exitStatus", 0]))
    assert type(not_an_object.details) is DETAILS_TYPES[11][0]
    assert not_an_object.details.exit_status is None
    assert set(not_an_object.problems) == {"payload.details"}


def test_null_values_read_as_absent() -> None:
    event = parse(body(40, {"msgName": None, "status": None}, cname=None, sid=None,
                       envelope={"notifyMs": None}))
    assert (event.cname, event.sid, event.notify_ms, event.msg_name) == (None, None, None, None)
    assert event.problems == {}


# --- bodies that are not events ---------------------------------------------------

@pytest.mark.parametrize(("raw", "reason"), [
    (b"\xff\xfe{}", "invalid_utf8"), (b'{"a": "\xc3"}', "invalid_utf8"),
    (b"", "invalid_json"), (b"{", "invalid_json"), (b"{'a': 1}", "invalid_json"),
    (b'{"a": NaN}', "invalid_json"), (b'{"a": Infinity}', "invalid_json"),
    (b'{"a": ' + b"9" * 5000 + b"}", "invalid_json"),
    (b"[]", "invalid_event"), (b"3", "invalid_event"), (b'"text"', "invalid_event"),
    (b"null", "invalid_event"), (b"{}", "invalid_event"), (12, "invalid_event"),
    (None, "invalid_event")])
def test_not_an_event(raw: Any, reason: str) -> None:
    error = invalid(raw)
    assert error.reason == reason
    assert error.messages
    assert isinstance(error, AgoraCallbacksError)
    assert error.reason in str(error)



@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\ude00\\ud83d", "\\ud83d"])
@pytest.mark.parametrize("where", ['"room"', '"sid-1"', '"n-1"', '"cname"'])
def test_a_lone_surrogate_escape_is_invalid_json(escape: str, where: str) -> None:
    """JSON's grammar lets ``"\\ud800"`` through, but it decodes to no Unicode
    character: a value holding it cannot be written as UTF-8 (Redis keys, records,
    logs), so the body is refused with its reason, wherever the escape is (a value,
    a key)."""
    text = json.dumps(body(40, {})).replace(where, where[:-1] + escape + '"', 1)
    error = invalid(text.encode())
    assert error.reason == "invalid_json"
    assert "surrogate" in str(error)


def test_a_surrogate_pair_escape_is_its_character() -> None:
    text = json.dumps(body(40, {})).replace('"room"', '"\\ud83d\\ude00 \\u00e9"')
    assert parse_event(text.encode()).cname == "\U0001F600 \u00e9"

def test_depth_limit() -> None:
    def nested(depth: int) -> str:
        inner = "[" * (depth - 2) + "]" * (depth - 2)
        return json.dumps(body(40, {})).replace('"room"', inner)  # cname at depth 2
    assert parse_event(nested(MAX_DEPTH)).problems == {"payload.cname": ("Not a valid string.",)}
    assert invalid(nested(MAX_DEPTH + 1)).reason == "too_deep"
    assert invalid("[" * 200_000).reason == "too_deep"
    assert invalid('{"a": "' + "[" * 100 + '"}').reason == "invalid_event"  # brackets in a string
    deep: dict[str, Any] = body(40, {})
    for _ in range(MAX_DEPTH):
        deep = {"wrap": deep}
    assert invalid(deep).reason == "too_deep"
    looped: dict[str, Any] = body(40, {})
    looped["payload"]["details"] = looped
    assert invalid(looped).reason == "too_deep"



@pytest.mark.parametrize("tail", ['"' + '\\"' * 16_384, '"\\' * 16_384])
def test_the_depth_scan_is_linear_on_unterminated_strings(tail: str) -> None:
    """A 32 KiB body of quotes and backslashes that never closes a string (more than
    ``MAX_DEPTH`` brackets before it, so the scan runs): refused at once as invalid
    JSON. The scan used to try every quote as the start of a string running to the
    end: seconds for 32 KiB, minutes for a body at ``MAX_BODY_BYTES``."""
    text = "[]" * (MAX_DEPTH + 1) + tail
    started = time.perf_counter()
    assert not text_too_deep(text)
    assert invalid(text.encode()).reason == "invalid_json"
    assert time.perf_counter() - started < 0.5

# --- meanings ---------------------------------------------------------------------

def test_enums_carry_the_documented_descriptions() -> None:
    assert [int(m) for m in e.ServiceType] == [0, 1, 2, 4, 6, 8]
    assert [int(m) for m in e.Module] == [0, 1, 2, 6]
    assert [int(m) for m in e.ErrorLevel] == [1, 2, 3, 4, 5]
    assert [int(m) for m in e.RecordingStatus] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 20]
    assert [(int(m), m.message) for m in e.WebRecorderStopCode] == [
        (0, "ok"), (1, "max_recording_hour"), (2, "capability_limit"),
        (3, "start_engine_failed"), (4, "page_load_timeout"), (5, "access_url_failed"),
        (6, "recorder_error")]
    assert [str(m) for m in e.LimitType] == ["resolution", "WebGL", "bandwidth"]
    assert [str(m) for m in e.TrackType] == ["audio", "video", "audio_and_video"]
    assert [int(m) for m in e.UploadErrorCode] == [32, 47, 51]
    assert [int(m) for m in e.UploadWarningCode] == [31, 32]
    assert [int(m) for m in e.CloudRecordingErrorCode] == [50, 52]
    assert [str(m) for m in e.TranscodeResult] == ["all_success", "partial_success", "fail"]
    assert [str(m) for m in e.FinalTranscodeResult] == [
        "total_success", "partial_success", "failed"]
    assert e.RecordingStatus(20).description == "The recording exits abnormally."
    assert e.ServiceType.WEB_RECORDER.description == "The web page recording module."
    for enum_cls in (e.ServiceType, e.Module, e.ErrorLevel, e.RecordingStatus, e.TrackType,
                     e.WebRecorderStopCode, e.LimitType, e.UploadErrorCode, e.EventType,
                     e.UploadWarningCode, e.CloudRecordingErrorCode, e.TranscodeResult,
                     e.UidTranscodeResult, e.FinalTranscodeResult, e.RtmpPublishStatus,
                     e.LeaveReason, e.StreamState, e.ExitStatus, e.RecordingMode,
                     e.ReloadReason, e.ProductId):
        assert all(e.describe(member) for member in enum_cls), enum_cls


def test_undocumented_codes_are_kept_as_plain_values() -> None:
    event = parse(body(3, {"status": 9}, serviceType=7))
    assert event.details.status == 9 and type(event.details.status) is int
    assert e.describe(event.details.status) is None
    assert event.service_type == 7 and e.describe(event.service_type) is None
    error = parse(body(1, {"module": 0, "errorCode": 47})).details
    assert error.error == 47 and type(error.error) is int  # recorder: see common errors
    assert parse(body(1, {"module": 1, "errorCode": 99})).details.error == 99


@pytest.mark.parametrize(("code", "reasons"), [
    (0, (e.LeaveReason.INIT,)), (2, (e.LeaveReason.SIG,)),
    (6, (e.LeaveReason.SIG, e.LeaveReason.NO_USERS)),
    (30, (e.LeaveReason.SIG, e.LeaveReason.NO_USERS, e.LeaveReason.TIMER_CATCH,
          e.LeaveReason.CLIENT_LEAVE)),
    (16 | 1 | 32, (e.LeaveReason.CLIENT_LEAVE,))])
def test_leave_code_is_decoded_as_a_bitmask(code: int, reasons: tuple[e.LeaveReason]) -> None:
    details = parse(body(41, {"leaveCode": code})).details
    assert details.leave_reasons == reasons
    assert details.leave_code == code
    assert parse(body(41, {})).details.leave_reasons == ()
