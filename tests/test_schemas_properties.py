"""Property tests: generated valid bodies keep their values; nothing but InvalidEvent
ever escapes; the fast path and marshmallow alone always agree."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agora_callbacks.schemas import DETAILS_TYPES, Event, InvalidEvent, loader, parse_event
from agora_callbacks.schemas.envelope import MAX_SEQUENCE, Envelope, Payload
from agora_callbacks.schemas.fields import (
    INT64_MAX,
    INT64_MIN,
    Bool,
    Int,
    ObjList,
    Str,
    StrOrInt,
    Uid,
)
from agora_callbacks.schemas.loader import FieldSpec, Model, compiled, load

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers(-(2**70), 2**70)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20)

Pair = tuple[Any, Any]  # (value in the body, value expected after parsing)


def int_pairs(minimum: int = INT64_MIN, maximum: int = INT64_MAX) -> st.SearchStrategy[Pair]:
    numbers = st.integers(minimum, maximum)
    return (numbers.map(lambda n: (n, n))
            | numbers.filter(lambda n: abs(n) < 10**18).map(lambda n: (str(n), n))
            | st.integers(max(minimum, -(2**52)), min(maximum, 2**52)).map(
                lambda n: (float(n), n)))


def field_pairs(spec: FieldSpec) -> st.SearchStrategy[Pair]:
    kind = spec.field
    if spec.child is not None:
        child = model_pairs(spec.child)
        if issubclass(kind, ObjList):
            return st.lists(child, max_size=3).map(
                lambda items: ([i for i, _ in items], tuple(e for _, e in items)))
        return child
    if issubclass(kind, Int):
        return int_pairs()
    if issubclass(kind, Uid):
        return (st.text(max_size=12).map(lambda s: (s, s))
                | st.integers(0, 2**40).map(lambda n: (n, str(n))))
    if issubclass(kind, Bool):
        return st.booleans().map(lambda b: (b, b))
    if issubclass(kind, StrOrInt):
        return (st.text(max_size=12).map(lambda s: (s, s))
                | st.integers(-1000, 1000).map(lambda n: (n, n)))
    if issubclass(kind, Str):
        enum = spec.kwargs.get("enum")
        texts = st.text(max_size=12)
        if enum is not None:
            texts = texts | st.sampled_from([m.value for m in enum])
        return texts.map(lambda s: (s, s))
    raise AssertionError(f"no strategy for {kind}")


def specs(model: type[Model]) -> list[tuple[str, FieldSpec]]:
    return [(f.name, f.metadata["schemas.spec"]) for f in dataclasses.fields(model)
            if "schemas.spec" in f.metadata]


@st.composite
def model_pairs(draw: st.DrawFn, model: type[Model]) -> Pair:
    """A JSON object for ``model`` (some fields absent, some unknown keys) and the
    attributes expected after parsing (``{"extra": ...}`` included)."""
    body: dict[str, Any] = {}
    expected: dict[str, Any] = {}
    known: set[str] = set()
    for attr, spec in specs(model):
        known.update(spec.keys)
        expected[attr] = None
        if draw(st.booleans()):
            raw, want = draw(field_pairs(spec))
            body[draw(st.sampled_from(spec.keys))] = raw
            expected[attr] = want
    extra = draw(st.dictionaries(st.text(max_size=8).filter(lambda k: k not in known),
                                 json_values, max_size=2))
    body.update(extra)
    expected["extra"] = loader.freeze(extra)
    return body, expected


def check(obj: Any, expected: Any) -> None:
    if isinstance(expected, dict):
        for attr, want in expected.items():
            check(getattr(obj, attr), want)
    elif isinstance(expected, tuple) and isinstance(obj, tuple) and expected and isinstance(
            expected[0], dict):
        assert len(obj) == len(expected)
        for item, want in zip(obj, expected, strict=True):
            check(item, want)
    else:
        assert obj == expected


@st.composite
def valid_bodies(draw: st.DrawFn) -> tuple[dict[str, Any], int, dict[str, Any], dict[str, Any]]:
    event_type = draw(st.sampled_from(sorted(DETAILS_TYPES)))
    details, expected_details = draw(model_pairs(DETAILS_TYPES[event_type][0]))
    sequence = draw(st.integers(0, MAX_SEQUENCE))
    sid = draw(st.text(min_size=1, max_size=32))
    notice = draw(st.text(min_size=1, max_size=40))
    notify = draw(st.integers(0, 2**45))
    legacy = draw(st.booleans())
    payload = {"cname": draw(st.text(max_size=20)), "uid": str(draw(st.integers(0, 2**32))),
               "sid": sid, "sequence": str(sequence) if legacy else sequence,
               "sendts": draw(st.integers(0, 2**45)), "serviceType": draw(st.integers(0, 8)),
               "details": details}
    envelope = {"notificationId" if legacy else "noticeId": notice, "productId": 3,
                "eventType": event_type, "eventMs" if legacy else "notifyMs": notify,
                "payload": payload}
    expected = {"notice_id": notice, "notify_ms": notify, "sid": sid, "sequence": sequence,
                "event_type": event_type, "cname": payload["cname"], "uid": payload["uid"],
                "sendts": payload["sendts"], "service_type": payload["serviceType"]}
    return envelope, event_type, expected, expected_details


def parse_both(raw: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """(fast-path outcome, marshmallow-only outcome): an Event or the InvalidEvent."""
    outcomes = []
    for fast in (True, False):
        monkeypatch.setattr(loader, "FAST_PATH", fast)
        try:
            outcomes.append(parse_event(raw))
        except InvalidEvent as exc:
            assert exc.reason != "unexpected", exc.__cause__
            outcomes.append((exc.reason, exc.messages))
    monkeypatch.setattr(loader, "FAST_PATH", True)
    # repr tells apart what == does not (True and 1, a member and its value)
    assert repr(outcomes[0]) == repr(outcomes[1])
    return outcomes[0], outcomes[1]


@SETTINGS
@given(valid_bodies())
def test_generated_valid_bodies_parse_to_their_values(
        case: tuple[dict[str, Any], int, dict[str, Any], dict[str, Any]]) -> None:
    body, event_type, expected, expected_details = case
    event = parse_event(json.dumps(body).encode())
    check(event, expected)
    assert type(event.details) is DETAILS_TYPES[event_type][0]
    check(event.details, expected_details)
    assert event.problems == {}
    assert event.is_cloud_recording


@SETTINGS
@given(valid_bodies())
def test_fast_path_and_marshmallow_agree_on_valid_bodies(
        case: tuple[dict[str, Any], int, dict[str, Any], dict[str, Any]]) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = parse_both(json.dumps(case[0]), monkeypatch)
    assert isinstance(fast, Event)
    assert fast == slow


@SETTINGS
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_nothing_but_invalid_event(raw: bytes) -> None:
    try:
        parse_event(raw)
    except InvalidEvent as exc:
        assert exc.reason != "unexpected", exc.__cause__


@SETTINGS
@given(json_values)
def test_arbitrary_json_raises_nothing_but_invalid_event(value: Any) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = parse_both(json.dumps(value), monkeypatch)
    assert fast == slow


ENVELOPE_KEYS = ["noticeId", "notificationId", "productId", "eventType", "notifyMs", "eventMs",
                 "sid", "payload"]
PAYLOAD_KEYS = ["cname", "uid", "sid", "sequence", "sendts", "serviceType", "serviceScene",
                "details"]
ITEM_KEYS = sorted({key for model, _ in DETAILS_TYPES.values() for _, spec in specs(model)
                    if spec.child for _, item_spec in specs(spec.child)
                    for key in item_spec.keys})
near_valid = (json_values | st.integers(-3, 3) | st.sampled_from(["0", "1", "true", "x", ""])
              | st.sampled_from([2**53 - 1, 2**53, 2**63 - 1, 2**63, -(2**63) - 1, 10**30])
              | st.integers().map(str) | st.floats(allow_nan=False, allow_infinity=False))


def details_keys(event_type: int) -> list[str]:
    model = DETAILS_TYPES.get(event_type, DETAILS_TYPES[1])[0]
    return [key for _, spec in specs(model) for key in spec.keys]


@SETTINGS
@given(st.sampled_from([*sorted(DETAILS_TYPES), 999]),
       st.lists(st.tuples(st.sampled_from(["envelope", "payload", "details", "item"]),
                          st.integers(0, 100), near_valid), min_size=1, max_size=4))
def test_any_json_in_any_field_raises_nothing_but_invalid_event(
        event_type: int, changes: list[tuple[str, int, Any]]) -> None:
    item: dict[str, Any] = {"fileName": "a.mp4", "uid": "1", "sliceStartTime": 1}
    details: dict[str, Any] = {"msgName": "x", "fileList": [item],
                               "uids": [{"uid": "1", "fileList": [item]}],
                               "aliVodInfo": item}
    payload: dict[str, Any] = {"sid": "s", "sequence": 1, "details": details}
    body: dict[str, Any] = {"noticeId": "n", "productId": 3, "eventType": event_type,
                            "payload": payload}
    for where, index, value in changes:
        target, keys = {"envelope": (body, ENVELOPE_KEYS), "payload": (payload, PAYLOAD_KEYS),
                        "details": (details, details_keys(event_type)),
                        "item": (item, ITEM_KEYS)}[where]
        target[keys[index % len(keys)]] = value
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast, slow = parse_both(json.dumps(body), monkeypatch)
    assert fast == slow
    if not isinstance(fast, Event):
        assert fast[0] == "invalid_event"


def all_models() -> list[type[Model]]:
    found: list[type[Model]] = [Envelope, Payload]
    for model in found + [model for model, _ in DETAILS_TYPES.values()]:
        for _, spec in specs(model):
            if spec.child is not None and spec.child not in found:
                found.append(spec.child)
        if model not in found:
            found.append(model)
    return found


@st.composite
def model_objects(draw: st.DrawFn) -> tuple[type[Model], dict[str, Any]]:
    model = draw(st.sampled_from(all_models()))
    keys = [key for _, spec in specs(model) for key in spec.keys]
    return model, draw(st.dictionaries(st.sampled_from(keys), near_valid, max_size=len(keys)))


@settings(SETTINGS, max_examples=400)
@given(model_objects())
def test_fast_path_and_marshmallow_agree_field_by_field(
        case: tuple[type[Model], dict[str, Any]]) -> None:
    model, data = case
    outcomes = []
    for fast in (True, False):
        problems: dict[str, list[str]] = {}
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setattr(loader, "FAST_PATH", fast)
            try:
                outcomes.append((load(compiled(model), data, "", problems), problems))
            except InvalidEvent as exc:
                outcomes.append((exc.reason, exc.messages))
    assert repr(outcomes[0]) == repr(outcomes[1])
