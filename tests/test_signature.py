"""The NCS signature verifier, against the published test vectors (ncs-delivery.md)."""

from __future__ import annotations

import pytest

from agora_callbacks.ingress import signature
from agora_callbacks.ingress.signature import (
    HEADER_V1,
    HEADER_V2,
    Rejected,
    Verified,
    sign,
    sign_headers,
    verify,
)

BODY_A = (b'{"eventType":10,"noticeId":"4eb720f0-8da7-11e9-a43e-53f411c2761f",'
          b'"notifyMs":1560408533119,"payload":{"a":"1","b":2},"productId":1}')
BODY_C = b'{"eventMs":1560408533119,' + BODY_A[1:]

VECTORS = [
    (BODY_A, "5a3bb6a6d9fad2ea9ae3fb707a14c9d7f3136df1",
     "de96da5acf03b0021ac3b4fa2225e7ae6f3533a30d50bb02c08ea4fa748bda24"),
    (BODY_C, "033c62f40f687675f17f0f41f91a40c71c0f134c",
     "6d3320c60b11101395b7fc8f9068748808a0aa1bfa064438e39d1bc2c7d74d99"),
]


@pytest.mark.parametrize(("body", "v1", "v2"), VECTORS)
def test_sign_reproduces_the_vectors(body: bytes, v1: str, v2: str) -> None:
    assert sign(body, "secret", "v1") == v1
    assert sign(body, "secret", "v2") == v2
    assert sign_headers(body, "secret") == {HEADER_V2: v2, HEADER_V1: v1}


@pytest.mark.parametrize(("body", "v1", "v2"), VECTORS)
def test_vectors_verify_with_each_algorithm(body: bytes, v1: str, v2: str) -> None:
    assert verify(body, {HEADER_V2: v2, HEADER_V1: v1}, ["secret"]) == Verified("v2", 0)
    assert verify(body, {HEADER_V2: v2}, ["secret"]) == Verified("v2", 0)
    assert verify(body, {HEADER_V1: v1}, ["secret"]) == Verified("v1", 0)


def test_the_vectors_are_not_interchangeable() -> None:
    # Agora's English page prints body C's hashes next to body A: they must fail.
    (a, _, _), (_, c_v1, c_v2) = VECTORS
    assert verify(a, {HEADER_V2: c_v2}, ["secret"]) == Rejected("mismatch", "v2")
    assert verify(a, {HEADER_V1: c_v1}, ["secret"]) == Rejected("mismatch", "v1")


def test_rotation_any_secret_verifies_and_its_index_is_reported() -> None:
    headers = sign_headers(BODY_A, "new")
    assert verify(BODY_A, headers, ["old", "new"]) == Verified("v2", 1)
    assert verify(BODY_A, headers, ["new", "old"]) == Verified("v2", 0)
    assert verify(BODY_A, headers, ["old", "older"]) == Rejected("mismatch", "v2")


def test_header_names_are_case_insensitive_on_a_plain_dict() -> None:
    _, v1, v2 = VECTORS[0]
    assert verify(BODY_A, {"agora-signature-v2": v2}, ["secret"]) == Verified("v2", 0)
    assert verify(BODY_A, {"AGORA-SIGNATURE": v1}, ["secret"]) == Verified("v1", 0)
    assert verify(BODY_A, {"aGoRa-SiGnAtUrE-v2": v2}, ["secret"]) == Verified("v2", 0)


def test_uppercase_hex_is_the_same_digest() -> None:
    _, _, v2 = VECTORS[0]
    assert verify(BODY_A, {HEADER_V2: v2.upper()}, ["secret"]) == Verified("v2", 0)


def test_a_wrong_v2_is_not_rescued_by_a_right_v1() -> None:
    _, v1, _ = VECTORS[0]
    headers = {HEADER_V2: "0" * 64, HEADER_V1: v1}
    assert verify(BODY_A, headers, ["secret"]) == Rejected("mismatch", "v2")


def test_require_v2_refuses_v1_alone() -> None:
    _, v1, v2 = VECTORS[0]
    assert verify(BODY_A, {HEADER_V1: v1}, ["secret"], require_v2=True) == Rejected(
        "v2_required")
    assert verify(BODY_A, {HEADER_V2: v2}, ["secret"], require_v2=True) == Verified("v2", 0)
    assert verify(BODY_A, {}, ["secret"], require_v2=True) == Rejected("missing")


@pytest.mark.parametrize(
    "headers",
    [
        {HEADER_V2: ""},
        {HEADER_V2: "zz" * 32},
        {HEADER_V2: "ab" * 31},
        {HEADER_V2: "ab" * 33},
        {HEADER_V2: "sha256=" + "ab" * 32},
        {HEADER_V1: "ab" * 32},  # a SHA-256 length in the SHA-1 header
    ],
)
def test_malformed_signatures_are_rejected(headers: dict[str, str]) -> None:
    outcome = verify(BODY_A, headers, ["secret"])
    assert isinstance(outcome, Rejected) and outcome.reason == signature.MALFORMED


def test_missing_signature_and_missing_secrets() -> None:
    assert verify(BODY_A, {"Content-Type": "application/json"}, ["secret"]) == Rejected(
        "missing")
    assert verify(BODY_A, sign_headers(BODY_A, "secret"), []) == Rejected("no_secrets")


def test_one_changed_byte_fails() -> None:
    headers = sign_headers(BODY_A, "secret")
    tampered = BODY_A.replace(b'"b":2', b'"b":3')
    assert not verify(tampered, headers, ["secret"]).ok
    assert not verify(BODY_A + b" ", headers, ["secret"]).ok


def test_bytes_secrets_and_v1_only_signing() -> None:
    headers = sign_headers(BODY_C, b"secret", v2=False)
    assert list(headers) == [HEADER_V1]
    assert verify(BODY_C, headers, [b"secret"]) == Verified("v1", 0)
