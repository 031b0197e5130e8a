"""Agora NCS signatures: pure functions over the raw body bytes and a headers mapping.

NCS signs the raw request body twice, lowercase hex, no prefix:

- ``Agora-Signature-V2``: HMAC-SHA256 keyed with the NCS secret (preferred);
- ``Agora-Signature``: HMAC-SHA1 keyed with the NCS secret (fallback).

``verify`` decides on V2 when that header is present (a wrong V2 is never rescued
by a right V1: no downgrade), else on V1 unless V2 is required. Any of several
secrets may verify (rotation); digests are compared in constant time. Independent of
Flask: the simulator, the tests and any other receiver use the same functions.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

HEADER_V2 = "Agora-Signature-V2"
HEADER_V1 = "Agora-Signature"

V2 = "v2"
V1 = "v1"

#: Rejection reasons (for the log line; never sent to the caller).
MISSING = "missing"
V2_REQUIRED = "v2_required"
MALFORMED = "malformed"
MISMATCH = "mismatch"
NO_SECRETS = "no_secrets"

_ALGORITHMS: dict[str, tuple[Callable[..., Any], int]] = {
    V2: (hashlib.sha256, 32),
    V1: (hashlib.sha1, 20),
}


class Headers(Protocol):
    """Any headers mapping: a dict, Werkzeug's ``Headers``, ``http.client`` messages."""

    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


@dataclass(frozen=True, slots=True)
class Verified:
    """The body is authentic: which signature verified it, with which secret."""

    signature: str
    secret_index: int
    ok: bool = True


@dataclass(frozen=True, slots=True)
class Rejected:
    """The body is not authentic; ``reason`` is one of the module's reason names."""

    reason: str
    signature: str = ""
    ok: bool = False


def _digest(secret: str | bytes, body: bytes, signature: str) -> bytes:
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    algorithm, _ = _ALGORITHMS[signature]
    return hmac.new(key, body, algorithm).digest()


def sign(body: bytes, secret: str | bytes, signature: str = V2) -> str:
    """The lowercase hex signature of ``body`` (``signature`` is ``"v2"`` or ``"v1"``)."""
    return _digest(secret, body, signature).hex()


def sign_headers(body: bytes, secret: str | bytes, *, v1: bool = True,
                 v2: bool = True) -> dict[str, str]:
    """The signature headers NCS would send with ``body``: both by default, as NCS does."""
    headers: dict[str, str] = {}
    if v2:
        headers[HEADER_V2] = sign(body, secret, V2)
    if v1:
        headers[HEADER_V1] = sign(body, secret, V1)
    return headers


def header_value(headers: Headers, name: str) -> str | None:
    """``headers[name]`` with the name matched case-insensitively, for any mapping
    (a plain dict as well as Werkzeug's case-insensitive ``Headers``)."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    value = headers.get(lowered)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


def _parse_hex(value: str, size: int) -> bytes | None:
    text = value.strip()
    if len(text) != 2 * size:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


def _keys(secrets: Iterable[str | bytes]) -> list[bytes]:
    return [s.encode("utf-8") if isinstance(s, str) else s for s in secrets]


def _chosen(headers: Headers, require_v2: bool) -> tuple[str, bytes] | Rejected:
    """The signature ``verify`` decides on and its digest, or why there is none."""
    given = header_value(headers, HEADER_V2)
    signature = V2
    if given is None:
        if require_v2:
            return Rejected(V2_REQUIRED if header_value(headers, HEADER_V1) else MISSING)
        given = header_value(headers, HEADER_V1)
        signature = V1
        if given is None:
            return Rejected(MISSING)
    expected = _parse_hex(given, _ALGORITHMS[signature][1])
    if expected is None:
        return Rejected(MALFORMED, signature)
    return signature, expected


def check_headers(headers: Headers, require_v2: bool = False) -> Rejected | None:
    """What ``verify`` would refuse from the headers alone (no signature header, V1
    alone when V2 is required, a signature that is not hex of the right length), or
    ``None``: lets a receiver refuse such a request before reading its body."""
    chosen = _chosen(headers, require_v2)
    return chosen if isinstance(chosen, Rejected) else None


def verify(body: bytes, headers: Headers, secrets: Sequence[str | bytes],
           require_v2: bool = False) -> Verified | Rejected:
    """Check ``body`` against the signature headers with every secret, in order.

    Returns ``Verified`` (which signature, which secret index) or ``Rejected`` (why).
    Every configured secret is tried even after a match, so the time taken does not
    tell which secret (or whether any) matched.
    """
    keys = _keys(secrets)
    if not keys:
        return Rejected(NO_SECRETS)
    chosen = _chosen(headers, require_v2)
    if isinstance(chosen, Rejected):
        return chosen
    signature, expected = chosen
    algorithm, _ = _ALGORITHMS[signature]
    matched = -1
    for index, key in enumerate(keys):
        if hmac.compare_digest(hmac.digest(key, body, algorithm), expected) and matched < 0:
            matched = index
    if matched < 0:
        return Rejected(MISMATCH, signature)
    return Verified(signature, matched)
