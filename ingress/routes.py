"""``POST /agora/ncs``: the URL users paste into Agora's console.

Order of decisions: the signature headers (401 before a byte of the body is read when
there is no signature header, or none ``verify`` could accept: a client that sends
headers and then stalls must not hold a request thread for nothing), a declared
length over the limit (413, nothing read), the bounded read (413 / 400), an empty body
(400), the signature over the raw bytes (401, nothing stored), one ``XADD`` to the
inbox (503 + ``Retry-After`` if Redis cannot take it), then ``200 {}``. The body is
never parsed: a verified body that is not JSON is stored all the same, and the
workers dead-letter it with its reason.

The read itself has no deadline here: a WSGI server's read cannot be abandoned from
the app. ``agora-callbacks web`` serves the app behind ``body_deadline``, which reads
the body on the event loop within ``BODY_READ_TIMEOUT_S`` (408 after it) before this
route runs, and hands a request this route refuses from its signature headers over
at once (README, "Slow clients").
"""

from __future__ import annotations

import time

import redis
from flask import Blueprint, Response, request

from agora_callbacks import inbox, metrics
from agora_callbacks.ingress import request_id, responses
from agora_callbacks.ingress.body import BodyError, read_body
from agora_callbacks.ingress.signature import V1, V2, Rejected, check_headers, verify
from agora_callbacks.ingress.state import get_state
from agora_callbacks.logs import get_logger

PATH = "/agora/ncs"

bp = Blueprint("ncs", __name__)
#: The counters of every request, through the ingress's tally (``INGRESS_VERIFIED``'s
#: children resolved once).
_RECEIVED = metrics.tallied(metrics.INGRESS_RECEIVED)
_VERIFIED = {name: metrics.tallied(metrics.INGRESS_VERIFIED.labels(name)) for name in (V1, V2)}
_STORED = metrics.tallied(metrics.INGRESS_STORED)
log = get_logger("ingress.ncs")


@bp.post(PATH)
def receive() -> Response:
    state = get_state()
    settings = state.settings
    environ = request.environ
    _RECEIVED.inc()
    headers = request.headers
    early = check_headers(headers, settings.require_v2)
    if early is not None:  # refused before its body is read: nothing to wait for
        metrics.INGRESS_REJECTED.labels(f"signature_{early.reason}").inc()
        log.warning("ncs.rejected", reason=f"signature_{early.reason}", status=401,
                    signature=early.signature or None, content_length=request.content_length)
        return responses.unauthorized()
    try:
        body = read_body(environ, settings.max_body_bytes)
    except BodyError as exc:
        metrics.INGRESS_REJECTED.labels(exc.reason).inc()
        log.warning("ncs.rejected", reason=exc.reason, status=exc.status,
                    content_length=request.content_length)
        return responses.error(exc.status, exc.message)
    if not body:
        metrics.INGRESS_REJECTED.labels("empty_body").inc()
        log.warning("ncs.rejected", reason="empty_body", status=400)
        return responses.error(400, "empty body")

    outcome = verify(body, headers, state.secrets, settings.require_v2)
    if isinstance(outcome, Rejected):
        metrics.INGRESS_REJECTED.labels(f"signature_{outcome.reason}").inc()
        log.warning("ncs.rejected", reason=f"signature_{outcome.reason}", status=401,
                    signature=outcome.signature or None, bytes=len(body))
        return responses.unauthorized()

    _VERIFIED[outcome.signature].inc()
    meta = inbox.ReceiveMeta(
        received_ms=int(time.time() * 1000),
        signature=outcome.signature,
        secret_index=outcome.secret_index,
        remote_addr=environ.get("REMOTE_ADDR") or "",  # what request.remote_addr reads
        request_id=environ.get(request_id.ENVIRON_KEY, ""),
    )
    try:
        entry_id = state.writer.store(body, meta)
    except (redis.RedisError, OSError) as exc:
        metrics.INGRESS_STORE_FAILED.inc()
        log.error("ncs.storage_unavailable", error=type(exc).__name__, status=503,
                  signature=outcome.signature, bytes=len(body))
        return responses.unavailable(state.retry_after)
    _STORED.inc()
    log.info("ncs.stored", entry_id=entry_id, signature=outcome.signature,
             secret_index=outcome.secret_index, bytes=len(body))
    return responses.ok()
