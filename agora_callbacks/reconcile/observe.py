"""What a ``query`` answer says about a recording, as the record's ``query`` facts (pure).

The facts are the shape ``lifecycle.apply_query`` folds into the record (the
lifecycle helper's interface): ``outcome`` (``active``, ``ended``, ``failover``,
``error``), ``status`` (0..8, 20, with its meaning), the files of ``fileList`` in
either ``fileListMode`` (``"string"``: one M3U8 name; ``"json"``: objects as in
event 31) and of web page recording's ``extensionServiceState``, normalised like
the record's files, and the web services' states.

``sliceStartTime`` is in seconds in ``query``'s examples and in milliseconds in
callbacks: values below ``1e11`` (a date in 1973 as ms, in 5138 as seconds) are
read as seconds; every ``slice_start_time`` here is in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agora_callbacks.reconcile.client import Answer
from agora_callbacks.schemas import enums

#: Below this, a ``sliceStartTime`` is in seconds.
SECONDS_BELOW = 10**11
#: A number sent as a string: an optional minus sign and up to 30 ASCII decimal
#: digits (``str.isdigit`` also accepts a superscript two, which ``int`` refuses, as
#: it refuses more than 4300 digits).
_DECIMAL = re.compile(r"-?[0-9]{1,30}")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _str(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def slice_ms(value: Any) -> int | None:
    """A ``sliceStartTime`` in milliseconds, whichever unit it came in."""
    number = _int(value)
    if number is None or number <= 0:
        return None if number is None else number
    return number * 1000 if number < SECONDS_BELOW else number


def _file(name: Any, item: Mapping[str, Any]) -> dict[str, Any] | None:
    file_name = _str(name)
    if not file_name or not file_name.strip():
        return None
    return {
        "file_name": file_name.strip(),
        "track_type": _str(item.get("trackType")),
        "uid": _str(item.get("uid")),
        "mixed_all_user": _bool(item.get("mixedAllUser")),
        "is_playable": _bool(item.get("isPlayable")),
        "slice_start_time": slice_ms(item.get("sliceStartTime")),
    }


def files_of(file_list: Any, slice_start: Any = None) -> list[dict[str, Any]]:
    """``fileList`` in ``"string"`` form (a name; ``;``-separated names read too) or
    ``"json"`` form (objects with ``fileName``, or web's ``filename``)."""
    if isinstance(file_list, str):
        names = [n for n in file_list.split(";") if n.strip()]
        entries = [_file(n, {"sliceStartTime": slice_start}) for n in names]
    elif isinstance(file_list, list):
        entries = [_file(item.get("fileName", item.get("filename")), item)
                   for item in file_list if isinstance(item, Mapping)]
    else:
        entries = []
    return [e for e in entries if e is not None]


def _service(item: Mapping[str, Any]) -> dict[str, Any]:
    payload: Mapping[str, Any] = item.get("payload") or {}
    if not isinstance(payload, Mapping):
        payload = {}
    outputs: list[Any] = payload.get("outputs") or []
    if not isinstance(outputs, list):
        outputs = []
    return {
        "service_name": _str(item.get("serviceName")),
        "state": _str(payload.get("state")),
        "onhold": _bool(payload.get("onhold")),
        "files": files_of(payload.get("fileList")),
        "outputs": [{"rtmp_url": _str(o.get("rtmpUrl")), "status": _str(o.get("status"))}
                    for o in outputs if isinstance(o, Mapping)],
    }


def _web(server: Mapping[str, Any]) -> dict[str, Any] | None:
    states = server.get("extensionServiceState")
    if not isinstance(states, list):
        return None
    services = [_service(s) for s in states if isinstance(s, Mapping)]
    recorder = next((s for s in services if s["service_name"] == "web_recorder_service"),
                    None)
    return {"state": recorder["state"] if recorder else None,
            "onhold": recorder["onhold"] if recorder else None,
            "services": services}


def _status_meaning(status: int | None) -> str | None:
    try:
        return None if status is None else enums.RecordingStatus(status).description
    except ValueError:
        return None


def _base(at_ms: int, reason: str, mode: str | None, outcome: str) -> dict[str, Any]:
    return {"source": "query", "at_ms": at_ms, "reason": reason, "outcome": outcome,
            "status": None, "status_meaning": None, "mode": mode, "file_list_mode": None,
            "files": [], "web": None, "error": None}


def active(body: Mapping[str, Any], *, at_ms: int, reason: str,
           mode: str | None) -> dict[str, Any]:
    """The facts of a ``200`` answer."""
    facts = _base(at_ms, reason, mode, "active")
    server = body.get("serverResponse")
    server = server if isinstance(server, Mapping) else {}
    status = _int(server.get("status"))
    facts["status"] = status
    facts["status_meaning"] = _status_meaning(status)
    file_list = server.get("fileList")
    mode_given = _str(server.get("fileListMode"))
    facts["file_list_mode"] = mode_given or (
        "string" if isinstance(file_list, str) else "json" if isinstance(file_list, list)
        else None)
    slice_start = server.get("sliceStartTime")
    facts["slice_start_time"] = slice_ms(slice_start)
    facts["files"] = files_of(file_list, slice_start)
    web = _web(server)
    if web is not None:
        facts["web"] = web
        known = {f["file_name"] for f in facts["files"]}
        for service in web["services"]:
            facts["files"].extend(f for f in service["files"] if f["file_name"] not in known)
    for name in ("cname", "uid"):
        facts[name] = _str(body.get(name))
    return facts


def ended(*, at_ms: int, reason: str, mode: str | None, why: str) -> dict[str, Any]:
    """The facts of a ``404`` read as "the session ended" (``why``: how it was told
    from a failover)."""
    facts = _base(at_ms, reason, mode, "ended")
    facts["ended_because"] = why
    return facts


def failover(*, at_ms: int, reason: str, mode: str | None) -> dict[str, Any]:
    """The facts of a ``404`` still inside the failover window when retries stopped."""
    return _base(at_ms, reason, mode, "failover")


def error(answer: Answer, *, at_ms: int, reason: str, mode: str | None) -> dict[str, Any]:
    """The facts of an error answer (``{code, reason}``, a timeout) after its retries."""
    facts = _base(at_ms, reason, mode, "error")
    facts["error"] = {"code": answer.code, "reason": answer.reason,
                      "http_status": answer.http_status}
    return facts
