"""A recording's ``resourceId`` and mode, registered by the backend that started it.

Agora's ``query`` needs both and no callback carries them: the backend that called
``acquire`` and ``start`` registers them, with ``agora_callbacks.register_recording``
or ``POST /recordings/<sid>/resource``. Stored as one small JSON string per
recording (``keys.recording_resource``), expiring ``AGORA_RESOURCE_TTL_S`` after the
(last) registration. No Celery here: the ingress imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from agora_callbacks import keys

#: The modes of ``query``'s URL: individual, composite ("mix") and web page recording.
MODES = ("individual", "mix", "web")
#: Longest accepted sid / resourceId (Agora's are a few dozen to a few hundred chars).
MAX_ID_LENGTH = 1024
#: Largest accepted ``POST /recordings/<sid>/resource`` body.
MAX_BODY_BYTES = 4096


class InvalidRegistration(ValueError):
    """A registration that cannot be used; the message says why, in one line (for
    the caller, with the value it gave). ``logged``: the same without any value
    taken from the request (what the log line says: no body in the logs)."""

    def __init__(self, message: str, logged: str | None = None) -> None:
        super().__init__(message)
        self.logged = message if logged is None else logged


@dataclass(frozen=True)
class Registration:
    sid: str
    resource_id: str
    mode: str

    def to_json(self) -> str:
        return json.dumps({"sid": self.sid, "resourceId": self.resource_id, "mode": self.mode},
                          separators=(",", ":"))


def _identifier(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRegistration(f"{name} must be a non-empty string")
    value = value.strip()
    if len(value) > MAX_ID_LENGTH:
        raise InvalidRegistration(f"{name} is longer than {MAX_ID_LENGTH} characters")
    if any(ch in value for ch in "/?#") or not value.isprintable() or " " in value:
        raise InvalidRegistration(f"{name} may not contain '/', '?', '#', spaces or "
                                  "control characters (it goes into query's URL path)")
    if value in (".", ".."):
        raise InvalidRegistration(f"{name} may not be '.' or '..' (a URL path would drop "
                                  "it as a dot segment)")
    return value


def validate(sid: Any, resource_id: Any, mode: Any) -> Registration:
    """A checked registration, or ``InvalidRegistration`` naming what is wrong."""
    sid = _identifier("sid", sid)
    resource_id = _identifier("resourceId", resource_id)
    if mode not in MODES:
        expected = f"mode must be one of {', '.join(MODES)}"
        raise InvalidRegistration(f"{expected}, got {mode!r}", logged=expected)
    return Registration(sid=sid, resource_id=resource_id, mode=mode)


def from_request(sid: str, body: Any) -> Registration:
    """The registration in a decoded ``POST /recordings/<sid>/resource`` body
    (``{"resourceId": ..., "mode": ...}``)."""
    if not isinstance(body, Mapping):
        raise InvalidRegistration('body must be a JSON object {"resourceId": ..., "mode": ...}')
    unknown = sorted(set(body) - {"resourceId", "mode"})
    if unknown:
        raise InvalidRegistration(f"unknown field(s): {', '.join(map(str, unknown))}",
                                  logged=f"{len(unknown)} unknown field(s)")
    return validate(sid, body.get("resourceId"), body.get("mode"))


def save(client: redis.Redis, registration: Registration, ttl_s: int) -> None:
    """Store (or replace) the registration and restart its expiry, in one command."""
    client.set(keys.recording_resource(registration.sid), registration.to_json(), ex=ttl_s)


def load(client: redis.Redis, sid: str) -> Registration | None:
    """The registration of ``sid``, or None (never registered, or expired)."""
    raw: Any = client.get(keys.recording_resource(sid))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return validate(value.get("sid", sid), value.get("resourceId"), value.get("mode"))
    except (ValueError, AttributeError):
        return None
