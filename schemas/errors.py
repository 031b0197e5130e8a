"""The one exception ``parse_event`` lets out."""

from __future__ import annotations

from collections.abc import Mapping

from agora_callbacks.errors import AgoraCallbacksError

#: ``InvalidEvent.reason`` values.
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
TOO_DEEP = "too_deep"
INVALID_EVENT = "invalid_event"


class InvalidEvent(AgoraCallbacksError):
    """A body that is not a valid callback event.

    ``reason`` is a short code (``invalid_utf8``, ``invalid_json``, ``too_deep``,
    ``invalid_event``), fit for a dead letter or a metric label. ``messages`` maps
    a dotted field path (``payload.sequence``, ``payload.details.fileList.0.uid``;
    ``_body`` for the body as a whole) to the reasons it was refused. Neither
    carries the body's values, so both are safe to log.
    """

    def __init__(self, reason: str, messages: Mapping[str, list[str]]) -> None:
        self.reason = reason
        self.messages: dict[str, list[str]] = {k: list(v) for k, v in messages.items()}
        super().__init__(reason, self.messages)

    def __str__(self) -> str:
        parts = "; ".join(f"{path}: {' '.join(why)}" for path, why in self.messages.items())
        return f"{self.reason}: {parts}" if parts else self.reason
