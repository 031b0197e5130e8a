"""One call of Agora's ``query`` REST endpoint, its answer sorted into what to do next.

``GET {AGORA_REST_URL}/v1/apps/{appid}/cloud_recording/resourceid/{resourceid}/sid/{sid}
/mode/{mode}/query`` with Basic authentication (customer id and secret), through
``httpx``, after the shared rate limit let it through. What comes back
(Agora's "Response status codes" page):

- ``200`` with a JSON object: ``ok``.
- Agora's own ``404``: ``not_found``: the session ended, or a failover is under way
  (``reconcile.policy`` tells them apart). Agora's is a JSON object with an integer
  ``code`` and either a ``reason`` (its error shape, ``{"code": 404, "reason":
  "failed to find worker"}``) or the session's ``sid``/``resourceId``/
  ``serverResponse`` (the shape integrators saw, the reason in
  ``serverResponse.payload.message``).
- ``404 {"message": "no Route matched with those values"}`` (Agora's gateway): a
  wrong path under ``AGORA_REST_URL``: ``error``, not retried.
- any other ``404`` (an HTML page, an empty body, JSON of another shape: a proxy, or
  ``AGORA_REST_URL`` naming another server) is not Agora's and says nothing about the
  session: ``retry``, with a reason that says so.
- ``206`` (code 65, request not completed), ``429`` (rate limit), ``5xx`` (code 62,
  request timeout, ...), a timeout (no complete answer within ``timeout_s``, however
  its bytes trickle in), a connection error, a body that does not decode (a
  ``Content-Encoding`` it does not have): ``retry``.
- anything else (``400`` bad parameters, ``401`` bad credentials, ...): ``error``.
- no rate-limit slot within ``rate_wait_s`` (nothing sent): ``throttled``, with
  ``retry_after_s``. A worker waits little (``WORKER_RATE_WAIT_S``) and asks again
  later through a task retry, so that a burst of reconciliations does not hold the
  pool processes that run event handlers.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from agora_callbacks import metrics
from agora_callbacks.reconcile.answers import Kind
from agora_callbacks.reconcile.ratelimit import RateLimiter, RateLimitTimeout
from agora_callbacks.reconcile.registration import Registration

#: Seconds to wait for Agora's whole answer (Agora itself answers 504, code 62, when
#: its backend times out).
TIMEOUT_S = 10.0
#: Longest wait for a rate-limit slot in one attempt (``recording --reconcile``).
RATE_WAIT_S = 30.0
#: ... in a worker's attempt: a little over one rate window, then a task retry.
WORKER_RATE_WAIT_S = 1.5

#: Longest reason taken from an answer's text (Agora's are a few words; a proxy's
#: error page or an echo of the request is cut here, in the logs and the record).
MAX_REASON_CHARS = 200

# httpx logs every request at INFO through stdlib logging: our own structured line
# per decision says what matters (reconcile.answer / reconcile.retry).
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Answer:
    """What one ``query`` call got. ``body``: the decoded JSON object (``ok``)."""

    kind: Kind
    http_status: int | None
    body: dict[str, Any] | None = None
    code: int | None = None
    reason: str | None = None
    retry_after_s: float | None = None


class _TooSlow(Exception):
    """The answer was still arriving at the call's deadline."""


def _decoded(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, RecursionError):
        return None


def _read_by(response: httpx.Response, deadline: float) -> bytes:
    """The body, read as it arrives; ``_TooSlow`` once ``deadline`` (monotonic) is
    passed. httpx's own timeout bounds each read, not the whole answer."""
    chunks: list[bytes] = []
    for chunk in response.iter_bytes():
        if time.monotonic() > deadline:
            raise _TooSlow
        chunks.append(chunk)
    return b"".join(chunks)


def form_of(content: bytes, content_type: str | None) -> str:
    """What a body that is not JSON is, for a reason: ``an empty body``, ``a text/html
    body``."""
    if not content.strip():
        return "an empty body"
    media = (content_type or "").partition(";")[0].strip().lower()
    return f"a {media} body" if media else "a body without a Content-Type"


def _session_message(obj: dict[str, Any]) -> str | None:
    """``serverResponse.payload.message`` (Agora's 404 as integrators saw it)."""
    server = obj.get("serverResponse")
    payload = server.get("payload") if isinstance(server, dict) else None
    message = payload.get("message") if isinstance(payload, dict) else None
    return message if isinstance(message, str) else None


def _agoras(obj: dict[str, Any], code: int | None, reason: str | None) -> bool:
    """Agora's answer: an integer ``code`` with a ``reason`` or the session's ids."""
    return code is not None and (reason is not None or any(
        key in obj for key in ("sid", "resourceId", "serverResponse")))


def classify(status: int, body: Any, *, form: str = "a body") -> Answer:
    """The answer an HTTP status and a decoded body make (pure). ``body``: the decoded
    JSON, None when it was not JSON; ``form``: what it was then (``form_of``)."""
    obj = body if isinstance(body, dict) else {}
    code = obj.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    reason = obj.get("reason") if isinstance(obj.get("reason"), str) else None
    message = obj.get("message") if isinstance(obj.get("message"), str) else None
    text = reason or message
    if status == 200:
        if isinstance(body, dict):
            return Answer("ok", status, body=body)
        return Answer("retry", status, reason="200 without a JSON object")
    if status == 404:
        if message and "no route" in message.lower():
            return Answer("error", status, code=code, reason=f"wrong URL: {message}")
        if _agoras(obj, code, reason):
            return Answer("not_found", status, code=code,
                          reason=reason or _session_message(obj) or "not found")
        what = (f"{form}, not JSON" if body is None
                else "JSON without Agora's code and reason")
        return Answer("retry", status,
                      reason=f"404 not from Agora ({what}): a proxy or a wrong "
                             "AGORA_REST_URL answered, not Agora")
    if status in (206, 408, 429) or status >= 500:
        return Answer("retry", status, code=code, reason=text or f"HTTP {status}")
    return Answer("error", status, code=code, reason=text or f"HTTP {status}")


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret of ``secrets`` replaced by ``***``, cut to
    ``MAX_REASON_CHARS``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS - 3] + "..."
    return text


class QueryClient:
    """Calls ``query``; one ``httpx.Client`` (keep-alive) per instance."""

    def __init__(self, base_url: str, app_id: str, customer_id: str, customer_secret: str,
                 limiter: RateLimiter, *, timeout_s: float = TIMEOUT_S,
                 rate_wait_s: float = RATE_WAIT_S) -> None:
        self.app_id = app_id
        self.limiter = limiter
        self.rate_wait_s = rate_wait_s
        self.timeout_s = timeout_s
        # What the server's text must never bring into a reason (and so into a log
        # line or the record): an error page or a proxy may echo the request.
        basic = base64.b64encode(f"{customer_id}:{customer_secret}".encode()).decode()
        self._secrets = (basic, customer_secret)
        self._http = httpx.Client(base_url=base_url, auth=(customer_id, customer_secret),
                                  timeout=timeout_s,
                                  headers={"Accept": "application/json"})

    def path(self, reg: Registration) -> str:
        parts = [quote(part, safe="") for part in (self.app_id, reg.resource_id, reg.sid,
                                                   reg.mode)]
        return ("/v1/apps/{}/cloud_recording/resourceid/{}/sid/{}/mode/{}/query"
                .format(*parts))

    def query(self, reg: Registration) -> Answer:
        """One call, after the rate limit let it through (none within ``rate_wait_s``:
        ``throttled``, nothing sent). Counted in ``acb_reconcile_queries_total``."""
        answer = self._query(reg)
        metrics.RECONCILE_QUERIES.labels(answer.kind).inc()
        return answer

    def _query(self, reg: Registration) -> Answer:
        try:
            self.limiter.acquire(self.rate_wait_s)
        except RateLimitTimeout as exc:
            # Spread the waiting callers over the next second or so.
            return Answer("throttled", None, reason=str(exc),
                          retry_after_s=exc.wait_s + random.uniform(0, 1.0))
        return self._send(self.path(reg))

    def _send(self, path: str) -> Answer:
        """The GET, its whole answer within ``timeout_s``, classified; a reason taken
        from the answer's text without the credentials and cut short (``redact``)."""
        answer = self._exchange(path)
        if answer.reason is None:
            return answer
        return dataclasses.replace(answer, reason=redact(answer.reason, self._secrets))

    def _exchange(self, path: str) -> Answer:
        deadline = time.monotonic() + self.timeout_s
        try:
            with self._http.stream("GET", path) as response:
                try:
                    content = _read_by(response, deadline)
                except httpx.DecodingError as exc:
                    return Answer("retry", response.status_code,
                                  reason=f"answer does not decode: {type(exc).__name__}")
        except (httpx.TimeoutException, _TooSlow):
            return Answer("retry", None, reason="timeout")
        except httpx.TransportError as exc:
            return Answer("retry", None, reason=f"connection error: {type(exc).__name__}")
        return classify(response.status_code, _decoded(content),
                        form=form_of(content, response.headers.get("Content-Type")))

    def close(self) -> None:
        self._http.close()
