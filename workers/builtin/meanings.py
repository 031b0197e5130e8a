"""Codes as the recording state stores them: ``{"code": <plain value>, "meaning": <text>}``.

The texts come from ``schemas.enums`` (the reference page's own descriptions); this
module only turns enum members or raw values into plain, JSON-ready pairs, and
holds the few texts that are ours: the lifecycle phases the fold derives.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from agora_callbacks.schemas import enums


def plain(value: Any) -> Any:
    """An enum member as its raw value (int or str); anything else unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    return value


def coded(value: Any, enum_cls: type[Enum] | None = None) -> dict[str, Any] | None:
    """``{"code", "meaning"}`` for a code; the meaning is None when undocumented."""
    if value is None:
        return None
    if enum_cls is not None:
        value = enums.member_or_value(enum_cls, plain(value))
    return {"code": plain(value), "meaning": enums.describe(value)}


def error_code(module: Any, code: Any) -> dict[str, Any] | None:
    """Event 1's ``errorCode``: its table depends on the module it came from."""
    table: dict[int, type[Enum]] = {
        int(enums.Module.UPLOADER): enums.UploadErrorCode,
        int(enums.Module.CLOUD_RECORDING): enums.CloudRecordingErrorCode,
    }
    return coded(code, table.get(plain(module)) if isinstance(plain(module), int) else None)


def warning_code(module: Any, code: Any) -> dict[str, Any] | None:
    """Event 2's ``warnCode``: documented for the uploader only."""
    uploader = plain(module) == int(enums.Module.UPLOADER)
    return coded(code, enums.UploadWarningCode if uploader else None)


def leave_reasons(code: Any) -> list[dict[str, Any]]:
    """Event 41's ``leaveCode`` bitmask as the reasons it sets."""
    if not isinstance(plain(code), int):
        return []
    return [{"name": reason.name, "bit": int(reason), "meaning": reason.description}
            for reason in enums.decode_leave_code(int(plain(code)))]


def web_stop(code: Any) -> dict[str, Any] | None:
    """Event 71's ``code``, with the ``message`` Agora documents for it."""
    if code is None:
        return None
    member = enums.member_or_value(enums.WebRecorderStopCode, plain(code))
    return {"code": plain(member), "meaning": enums.describe(member),
            "documented_message": getattr(member, "message", None)}


#: Lifecycle phases the fold derives from events (ours, not Agora codes).
PHASES: Mapping[str, str] = {
    "unknown": "No lifecycle event seen yet.",
    "starting": "The recording service is starting; nothing is recorded yet.",
    "recording": "The recorder is in the channel (or on the web page) and recording.",
    "failing_over": "The service moved to a new server (high availability); the recorder "
                    "rejoins under a new uid within 90 s.",
    "stopped": "The recorder left the channel (or the web page); the recorded files are "
               "being uploaded.",
    "uploaded": "All recorded files are uploaded.",
    "transcoding": "Postponed transcoding of the uploaded files is running.",
    "transcoded": "Postponed transcoding finished (see transcoding for the result).",
    "failed": "The recording service exited abnormally (status 20); an exit event may follow.",
    "exited": "The recording service ended its tasks and exited normally.",
    "exited_abnormally": "The recording service exited abnormally.",
}

#: Phases only another exit event (11) may replace.
TERMINAL_PHASES = frozenset({"exited", "exited_abnormally"})


def phase_of_status(code: Any) -> str | None:
    """The phase an event 3 status code implies."""
    value = plain(code)
    if not isinstance(value, int):
        return None
    if value <= 4:
        return "starting"
    if value == 5:
        return "recording"
    if value in (6, 7, 8):
        return "stopped"
    if value == 20:
        return "failed"
    return None
