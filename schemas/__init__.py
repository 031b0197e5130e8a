"""Typed, tolerant Cloud Recording events (issue 3).

``parse_event(raw)`` turns a stored raw body (bytes, str or a decoded mapping)
into an immutable ``Event`` with typed ``details`` (one type per documented
``eventType``, see ``schemas.details``) or raises ``InvalidEvent``, and nothing
else. Codes carry their documented meaning in ``schemas.enums``.
"""

from agora_callbacks.schemas import details, enums
from agora_callbacks.schemas.details import *  # noqa: F403
from agora_callbacks.schemas.enums import *  # noqa: F403
from agora_callbacks.schemas.errors import InvalidEvent
from agora_callbacks.schemas.events import Event
from agora_callbacks.schemas.parse import MAX_DEPTH, parse_event

__all__ = [
    "MAX_DEPTH",
    "Event",
    "InvalidEvent",
    "details",
    "enums",
    "parse_event",
    *details.__all__,
    *enums.__all__,
]
