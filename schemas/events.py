"""The typed, immutable event ``parse_event`` returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agora_callbacks.schemas.details import Details
from agora_callbacks.schemas.enums import ServiceType
from agora_callbacks.schemas.loader import EMPTY

CLOUD_RECORDING_PRODUCT_ID = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One callback. Fields that do not apply or were absent read ``None``.

    - ``notice_id`` is ``noticeId`` or the legacy ``notificationId``; ``notify_ms``
      is ``notifyMs`` or the legacy ``eventMs``.
    - ``sid`` is ``payload.sid``, or the top-level ``sid`` when the payload has none.
    - The payload fields (``cname`` to ``details``) are read for Cloud Recording
      (``product_id == 3``) only; other products keep their payload in ``payload``
      and get an empty ``Details``.
    - ``details`` is the typed details of ``event_type`` (``schemas.details``), a
      plain ``Details`` for an undocumented event type.
    - ``extra`` and ``payload_extra`` keep unknown envelope and payload keys,
      ``details.extra`` unknown details keys (read-only).
    - ``problems`` maps the dotted path of each tolerated wrong value (which reads
      ``None``) to the reasons; empty for a clean body.
    - ``raw`` is the decoded body exactly as received (do not mutate it).
    """

    notice_id: str
    product_id: int
    event_type: int
    notify_ms: int | None
    sid: str | None
    cname: str | None = None
    uid: str | None = None
    sequence: int | None = None
    sendts: int | None = None
    service_type: ServiceType | int | None = None
    service_scene: str | None = None
    details: Details
    payload: Mapping[str, Any]
    extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    payload_extra: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    problems: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: EMPTY)
    raw: Mapping[str, Any]

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        """Pickle and deepcopy as the raw body, parsed again on the other side (the
        read-only mappings inside cannot be pickled, and the event is a function
        of ``raw``)."""
        from agora_callbacks.schemas.parse import parse_event

        return parse_event, (dict(self.raw),)

    @property
    def msg_name(self) -> str | None:
        """``details.msgName``."""
        return self.details.msg_name

    @property
    def is_cloud_recording(self) -> bool:
        """A Cloud Recording event that carries its ordering keys (``sid``, ``sequence``)."""
        return (self.product_id == CLOUD_RECORDING_PRODUCT_ID and self.sid is not None
                and self.sequence is not None)
