"""What makes two callbacks the same event.

``DEDUPE_KEY=event`` (default): a Cloud Recording event with ``sid`` and
``sequence`` is unique by (``sid``, ``eventType``, ``sequence``): NCS resends and
redundant deliveries of one event share it, whatever their ``noticeId``. Anything
else is unique by ``noticeId``. ``DEDUPE_KEY=notice``: by ``noticeId`` only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agora_callbacks.schemas.events import Event


def is_ordered(event: Event) -> bool:
    """Events with ``sid`` and ``sequence`` go through the per-recording order."""
    return bool(event.is_cloud_recording)


def dedupe_field(event: Event, mode: str = "event") -> str:
    """The dedupe key of an ordered event inside its recording's dedupe hash."""
    if mode == "event" and event.sequence is not None:
        return f"{event.event_type}:{event.sequence}"
    return f"n:{event.notice_id}"


def dedupe_key(event: Event, mode: str = "event") -> str:
    """The event's dedupe key, as handlers receive it (``key=``): stable across
    resends and redundant copies, so a handler can use it for its own idempotency.

    ``<sid>:<eventType>:<sequence>``, or ``notice:<noticeId>``.
    """
    if mode == "event" and event.sid is not None and event.sequence is not None:
        return f"{event.sid}:{event.event_type}:{event.sequence}"
    return f"notice:{event.notice_id}"
