"""``parse_event``: raw body in, typed immutable ``Event`` out, or ``InvalidEvent``.

Order of checks, each with its ``InvalidEvent.reason``:
1. bytes must be UTF-8 (``invalid_utf8``);
2. nesting deeper than ``MAX_DEPTH`` is refused before ``json`` recurses into it
   (``too_deep``); a mapping given directly is walked without recursion, which
   also stops a mapping that contains itself;
3. JSON (``invalid_json``), without the non-standard ``NaN``/``Infinity`` or a
   ``\\u`` escape of a lone surrogate (no Unicode character: it could not be
   written to Redis); integers over 4,300 digits are refused by Python itself;
4. an object with a valid envelope, and for Cloud Recording a valid payload
   (``invalid_event``; see ``schemas.envelope`` for what is strict).

Nothing else escapes: an unexpected exception (a bug) becomes ``InvalidEvent``
with reason ``unexpected`` so the body ends as a dead letter, not a crashed task.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from agora_callbacks.schemas.details import DETAILS_TYPES, Details
from agora_callbacks.schemas.envelope import Envelope, Payload
from agora_callbacks.schemas.errors import (
    INVALID_EVENT,
    INVALID_JSON,
    INVALID_UTF8,
    TOO_DEEP,
    InvalidEvent,
)
from agora_callbacks.schemas.events import CLOUD_RECORDING_PRODUCT_ID, Event
from agora_callbacks.schemas.loader import EMPTY, builder, compiled, load, load_values

MAX_DEPTH = 32
UNEXPECTED = "unexpected"

#: A string (one left open runs to the end of the text: so that no quote is tried
#: again as the start of a string, which made the scan quadratic) or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)|[\[\]{}]', re.S)
_EMPTY_DETAILS = Details()
_GENERIC: tuple[type[Details], str] = (Details, "")
_ENVELOPE = compiled(Envelope)
_PAYLOAD = compiled(Payload)
_new_event = builder(Event)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)

RawBody = bytes | bytearray | memoryview | str | Mapping[str, Any]


def parse_event(raw: RawBody) -> Event:
    """The typed event in ``raw`` (bytes, str or a decoded mapping).

    Raises ``InvalidEvent`` (and nothing else) when ``raw`` is not a valid event."""
    try:
        return _parse(raw)
    except InvalidEvent:
        raise
    except RecursionError:
        raise InvalidEvent(TOO_DEEP, {"_body": ["Nested too deeply."]}) from None
    except Exception as exc:
        raise InvalidEvent(UNEXPECTED, {"_body": [type(exc).__name__]}) from exc


def _parse(raw: RawBody) -> Event:
    data = decode(raw)
    problems: dict[str, list[str]] = {}
    env = load_values(_ENVELOPE, data, "", problems)
    notice_id = env.get("notice_id")
    if notice_id is None:
        raise InvalidEvent(INVALID_EVENT, {"noticeId": ["Missing data for required field."]})
    product_id = env["product_id"]
    event_type = env["event_type"]
    raw_payload = env["payload"]
    if product_id != CLOUD_RECORDING_PRODUCT_ID:
        return _new_event({
            "notice_id": notice_id, "product_id": product_id, "event_type": event_type,
            "notify_ms": env.get("notify_ms"), "sid": env.get("sid"),
            "details": _EMPTY_DETAILS, "payload": MappingProxyType(raw_payload),
            "extra": env.get("extra", EMPTY), "problems": _frozen(problems), "raw": data})
    payload = load_values(_PAYLOAD, raw_payload, "payload.", problems)
    details_type = DETAILS_TYPES.get(event_type, _GENERIC)[0]
    raw_details = payload.get("details")
    details = (details_type() if raw_details is None else
               load(compiled(details_type), raw_details, "payload.details.", problems))
    sid = payload.get("sid")
    return _new_event({
        "notice_id": notice_id, "product_id": product_id, "event_type": event_type,
        "notify_ms": env.get("notify_ms"), "sid": env.get("sid") if sid is None else sid,
        "cname": payload.get("cname"), "uid": payload.get("uid"),
        "sequence": payload.get("sequence"), "sendts": payload.get("sendts"),
        "service_type": payload.get("service_type"),
        "service_scene": payload.get("service_scene"), "details": details,
        "payload": MappingProxyType(raw_payload), "extra": env.get("extra", EMPTY),
        "payload_extra": payload.get("extra", EMPTY), "problems": _frozen(problems),
        "raw": data})


def _frozen(problems: dict[str, list[str]]) -> Mapping[str, tuple[str, ...]]:
    if not problems:
        return EMPTY
    return MappingProxyType({path: tuple(why) for path, why in problems.items()})


def decode(raw: RawBody) -> dict[str, Any]:
    """Steps 1 to 3 of the module docstring: the body as a dict, or ``InvalidEvent``."""
    if isinstance(raw, Mapping):
        if mapping_too_deep(raw):
            raise InvalidEvent(TOO_DEEP, {"_body": [f"Nested deeper than {MAX_DEPTH}."]})
        data: Any = raw
    else:
        if isinstance(raw, bytes | bytearray | memoryview):
            try:
                text = str(raw, "utf-8")
            except UnicodeDecodeError as exc:
                raise InvalidEvent(INVALID_UTF8, {
                    "_body": [f"Not valid UTF-8 at byte {exc.start}."]}) from None
        elif isinstance(raw, str):
            text = raw
        else:
            raise InvalidEvent(INVALID_EVENT, {"_body": ["Not bytes, str or a mapping."]})
        if text_too_deep(text):
            raise InvalidEvent(TOO_DEEP, {"_body": [f"Nested deeper than {MAX_DEPTH}."]})
        try:
            data = _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            raise InvalidEvent(INVALID_JSON, {
                "_body": [f"{exc.msg} at line {exc.lineno} column {exc.colno}."]}) from None
        except ValueError as exc:
            raise InvalidEvent(INVALID_JSON, {"_body": [str(exc)[:100]]}) from None
        if "\\u" in text and not encodable(data):
            raise InvalidEvent(INVALID_JSON, {"_body": [
                "A \\u escape is a lone surrogate, not a Unicode character."]})
    if not isinstance(data, dict):
        if isinstance(data, Mapping):
            return dict(data)
        raise InvalidEvent(INVALID_EVENT, {"_body": ["Not a JSON object."]})
    return data


def encodable(data: Any) -> bool:
    """Whether every string of decoded JSON, keys included, can be written as UTF-8:
    a lone surrogate escape (``"\\ud800"``) passes JSON's grammar but decodes to a
    string that cannot be (not in a Redis key, a record or a log line)."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_too_deep(text: str) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``MAX_DEPTH``."""
    if text.count("{") + text.count("[") <= MAX_DEPTH:
        return False
    depth = 0
    for match in _TOKENS.finditer(text):
        first = match.group()[0]
        if first in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif first in "}]":
            depth -= 1
    return False


def mapping_too_deep(value: Mapping[str, Any]) -> bool:
    """Whether a decoded body nests containers deeper than ``MAX_DEPTH``."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = container.values() if isinstance(container, Mapping) else container
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, Mapping | list | tuple))
    return False
