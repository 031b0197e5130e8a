"""Every JSON example of the reference page, wrapped in an envelope.

The examples are copied verbatim from cloud-recording-callbacks.md (kept here so
the suite runs from a clean clone); when the page is present beside the checkout
(../shared/reference), a test checks the copy is still exact.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agora_callbacks.schemas import InvalidEvent, loader, parse_event
from agora_callbacks.schemas import enums as e

#: (eventType, example text), in page order. The second is not valid JSON.
EXAMPLES: list[tuple[int, str]] = [
    (31, """\
{
  "msgName": "uploaded",
  "fileList": [
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio",
      "uid": "57297",
      "mixedAllUser": false,
      "isPlayable": true,
      "sliceStartTime": 1619172871089
    },
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio",
      "uid": "10230",
      "mixedAllUser": false,
      "isPlayable": true,
      "sliceStartTime": 1619172871099
    }
  ],
  "status": 0
}
"""),
    (31, """\
{
  "msgName": "uploaded",
  "fileList": [
    {
      "fileName": xxx.m3u8",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619170461821
    }
  ],
  "status": 0
}
"""),
    (31, """\
{
  "msgName": "uploaded",
  "fileList": [
    {
      "fileName": "xxx.mp4",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619172632080
    },
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619172632080
    }
  ],
  "status": 0
}
"""),
    (31, """\
{
  "msgName": "uploaded",
  "status": 0
}
"""),
    (32, """\
{
  "msgName": "backuped",
  "fileList": [
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio",
      "uid": "57297",
      "mixedAllUser": false,
      "isPlayable": true,
      "sliceStartTime": 1619172871089
    },
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio",
      "uid": "10230",
      "mixedAllUser": false,
      "isPlayable": true,
      "sliceStartTime": 1619172871099
    }
  ],
  "status": 0
}
"""),
    (32, """\
{
  "msgName": "backuped",
  "fileList": [
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619170461821
    }
  ],
  "status": 0
}
"""),
    (32, """\
{
  "msgName": "backuped",
  "fileList": [
    {
      "fileName": "xxx.mp4",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619172632080
    },
    {
      "fileName": "xxx.m3u8",
      "trackType": "audio_and_video",
      "uid": "0",
      "mixedAllUser": true,
      "isPlayable": true,
      "sliceStartTime": 1619172632080
    }
  ],
  "status": 0
}
"""),
    (32, """\
{
  "msgName": "backuped",
  "status": 0
}
"""),
    (71, """\
{
  "msgName": "web_recorder_stopped",
  "code": 1,
  "message": "max_recording_hour",
  "details": "max recording hour is 4",
  "fileList": [
    {
      "filename": "test_p1627613634_www.m3u8",
      "sliceStartTime": 1627613641393
    },
    {
      "filename": "test_p1627613634_www_0.mp4",
      "sliceStartTime": 1627613641393
    }
  ]
}
"""),
]
INVALID_EXAMPLES = {1}


def wrap(event_type: int, details_text: str) -> str:
    """The example as ``details`` of a full callback body, kept as text so an invalid
    example stays invalid."""
    return ('{"noticeId":"2000001428:4330:107","productId":3,"eventType":' + str(event_type)
            + ',"notifyMs":1619172900000,"payload":{"cname":"room","uid":"57297",'
            '"sid":"38f8e3cfdc474cd56fc1ceba380d7e1a","sequence":3,"sendts":1619172899999,'
            '"serviceType":2,"details":' + details_text + "}}")


def snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def matches(model: Any, source: dict[str, Any]) -> None:
    """Every key of the example is on the model under its snake_case name, equal."""
    for key, value in source.items():
        attr = "file_name" if key == "filename" else snake(key)
        got = getattr(model, attr)
        if isinstance(value, list):
            assert len(got) == len(value)
            for item, item_source in zip(got, value, strict=True):
                matches(item, item_source)
        else:
            assert got == value, (key, got, value)
    assert model.extra == {}


def test_the_reference_page_has_these_examples() -> None:
    page = Path(__file__).resolve().parents[2] / "shared/reference/cloud-recording-callbacks.md"
    if not page.exists():
        pytest.skip("reference page not beside this checkout (a clean clone)")
    blocks = re.findall(r"```json\n(.*?)```", page.read_text(), re.S)
    assert blocks == [text for _, text in EXAMPLES]


@pytest.mark.parametrize("index", [i for i in range(len(EXAMPLES)) if i not in INVALID_EXAMPLES])
@pytest.mark.parametrize("fast_path", [True, False], ids=["fast", "marshmallow"])
def test_valid_example_parses_to_its_values(index: int, fast_path: bool,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "FAST_PATH", fast_path)
    event_type, text = EXAMPLES[index]
    event = parse_event(wrap(event_type, text).encode())
    assert event.event_type == event_type
    assert event.problems == {}
    assert event.is_cloud_recording
    assert event.sid == "38f8e3cfdc474cd56fc1ceba380d7e1a"
    assert event.service_type is e.ServiceType.UPLOADER
    matches(event.details, json.loads(text))


def test_first_individual_example_in_detail() -> None:
    details = parse_event(wrap(*EXAMPLES[0])).details
    assert details.msg_name == "uploaded"
    assert details.status == 0
    first, second = details.file_list
    assert (first.file_name, first.uid, first.slice_start_time) == ("xxx.m3u8", "57297",
                                                                     1619172871089)
    assert first.track_type is e.TrackType.AUDIO
    assert (first.mixed_all_user, first.is_playable) == (False, True)
    assert (second.uid, second.slice_start_time) == ("10230", 1619172871099)


def test_web_page_example_has_no_file_list() -> None:
    details = parse_event(wrap(*EXAMPLES[3])).details
    assert (details.msg_name, details.status, details.file_list) == ("uploaded", 0, None)


def test_event_71_example_reads_filename() -> None:
    details = parse_event(wrap(*EXAMPLES[8])).details
    assert details.code is e.WebRecorderStopCode.MAX_RECORDING_HOUR
    assert details.code.message == details.message == "max_recording_hour"
    assert details.details == "max recording hour is 4"
    assert [f.file_name for f in details.file_list] == [
        "test_p1627613634_www.m3u8", "test_p1627613634_www_0.mp4"]
    assert {f.slice_start_time for f in details.file_list} == {1627613641393}


def test_event_31_first_composite_example_is_invalid_json() -> None:
    event_type, text = EXAMPLES[1]
    assert '"fileName": xxx.m3u8"' in text
    with pytest.raises(InvalidEvent) as caught:
        parse_event(wrap(event_type, text).encode())
    assert caught.value.reason == "invalid_json"
    assert list(caught.value.messages) == ["_body"]
