"""The hand-off between the ingress and the workers: a Redis Stream of raw bodies.

The ingress appends one entry per verified request with a single ``XADD`` (one
round trip) and answers 200 only after Redis accepted it. Workers read the stream
through the consumer group ``keys.INBOX_GROUP``, and delete each entry once it is
taken in (admitted to a recording's buffer, deduplicated, or dead-lettered).

Entry fields (all bytes in Redis):

======== ==============================================================
``body``  the raw request body, byte for byte as received
``rms``   receive time, unix milliseconds
``sig``   which signature verified it: ``v2``, ``v1``, or ``replay``
``key``   index of the secret (in ``AGORA_NCS_SECRETS``) that verified it
``addr``  remote address
``rid``   request id (also bound to the ingress's log lines)
``origin`` only on re-injected bodies: where it came from (``dlq:<id>``, a file)
======== ==============================================================

A re-injected body (``origin`` set) bypasses the stale-replay check in the
workers; deduplication still applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis

from agora_callbacks import keys


@dataclass(frozen=True)
class ReceiveMeta:
    """What the ingress knows about a body besides its bytes."""

    received_ms: int
    signature: str
    secret_index: int
    remote_addr: str
    request_id: str
    origin: str | None = None

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "rms": self.received_ms,
            "sig": self.signature,
            "key": self.secret_index,
            "addr": self.remote_addr,
            "rid": self.request_id,
        }
        if self.origin is not None:
            fields["origin"] = self.origin
        return fields

    @classmethod
    def from_fields(cls, fields: Mapping[bytes, bytes]) -> ReceiveMeta:
        origin = fields.get(b"origin")
        return cls(
            received_ms=int(fields.get(b"rms", b"0") or 0),
            signature=fields.get(b"sig", b"").decode("utf-8", "replace"),
            secret_index=int(fields.get(b"key", b"-1") or -1),
            remote_addr=fields.get(b"addr", b"").decode("utf-8", "replace"),
            request_id=fields.get(b"rid", b"").decode("utf-8", "replace"),
            origin=origin.decode("utf-8", "replace") if origin is not None else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form, for dead letters and logs."""
        out: dict[str, Any] = {
            "received_ms": self.received_ms,
            "signature": self.signature,
            "secret_index": self.secret_index,
            "remote_addr": self.remote_addr,
            "request_id": self.request_id,
        }
        if self.origin is not None:
            out["origin"] = self.origin
        return out


@dataclass(frozen=True)
class InboxEntry:
    """One stored body as a worker reads it back."""

    entry_id: str
    body: bytes
    meta: ReceiveMeta

    @classmethod
    def from_stream(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> InboxEntry:
        eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
        body = fields.get(b"body", b"")
        return cls(entry_id=eid, body=body, meta=ReceiveMeta.from_fields(fields))


def fields_for(body: bytes, meta: ReceiveMeta) -> dict[Any, Any]:
    """The stream fields of one entry (body first)."""
    fields: dict[Any, Any] = {"body": body}
    fields.update(meta.to_fields())
    return fields


def store(client: redis.Redis, body: bytes, meta: ReceiveMeta) -> str:
    """Append one raw body to the inbox in a single round trip; return its entry id.

    Raises redis-py's ``RedisError`` subclasses when Redis cannot take it: the
    caller must then not acknowledge the request.
    """
    entry_id = client.xadd(keys.INBOX, fields_for(body, meta))
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
