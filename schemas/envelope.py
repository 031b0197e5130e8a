"""The NCS envelope and the Cloud Recording payload, as typed models.

Strict (a wrong value refuses the event, because it would corrupt the dedupe or
ordering keys or the dispatch): ``noticeId``, ``productId``, ``eventType``,
``payload`` (an object), both ``sid`` (a non-empty string when present) and
``sequence`` (an integer from 0 to 2**53 - 1, the largest a Redis score holds
exactly; numeric strings from the legacy format are accepted). Everything else is
tolerated: a wrong value reads ``None`` and is reported in ``Event.problems``.

Legacy names: ``notificationId`` for ``noticeId``, ``eventMs`` for ``notifyMs``.
Numbers, strict ones included, may arrive as integers, integral floats or numeric
strings (``"12"``): the value is the same integer, so no key changes with the form.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agora_callbacks.schemas.enums import ProductId, ServiceType
from agora_callbacks.schemas.fields import Int, Obj, Str, Uid
from agora_callbacks.schemas.loader import Model, spec

MAX_SEQUENCE = 2**53 - 1


class NoticeId(Str):
    """``noticeId``: a non-empty string (an integer is tolerated, as its text)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None,
                     **kwargs: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(int(value))
        return super()._deserialize(value, attr, data, **kwargs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope(Model):
    notice_id: str | None = spec(NoticeId, "noticeId", "notificationId", strict=True,
                                 non_empty=True)
    product_id: int = spec(Int, "productId", required=True, enum=ProductId)
    event_type: int = spec(Int, "eventType", required=True)
    notify_ms: int | None = spec(Int, "notifyMs", "eventMs")
    sid: str | None = spec(Str, "sid", strict=True, non_empty=True)
    payload: Mapping[str, Any] = spec(Obj, "payload", required=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Payload(Model):
    """The common fields of every Cloud Recording event's ``payload``."""

    cname: str | None = spec(Str, "cname")
    uid: str | None = spec(Uid, "uid")
    sid: str | None = spec(Str, "sid", strict=True, non_empty=True)
    sequence: int | None = spec(Int, "sequence", strict=True, minimum=0, maximum=MAX_SEQUENCE)
    sendts: int | None = spec(Int, "sendts")
    service_type: ServiceType | int | None = spec(Int, "serviceType", enum=ServiceType)
    service_scene: str | None = spec(Str, "serviceScene")
    details: Mapping[str, Any] | None = spec(Obj, "details")
