"""One reconciliation of a recording with ``query``: its attempts and the fold of the
facts into the record.

``Reconciler.attempt`` makes one ``query`` call and decides the next step
(``policy.decide``); ``Reconciler.apply`` folds the facts into the record through
the lifecycle's ``update_record`` (atomic with the turn-path fold; it fires the
phases the facts decide). Two drivers use them: the Celery task
(``reconcile.task``: a ``Retry`` becomes a task retry with a countdown, no pool
process sleeps) and ``run_blocking`` (``agora-callbacks recording SID
--reconcile``: it sleeps between attempts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import redis

from agora_callbacks.logs import get_logger
from agora_callbacks.reconcile import inflight, policy, registration
from agora_callbacks.reconcile.client import RATE_WAIT_S, QueryClient
from agora_callbacks.reconcile.ratelimit import RateLimiter
from agora_callbacks.settings import Settings

log = get_logger("reconcile")

#: The recording ``run_blocking`` is reconciling in this context, if any: a phase its
#: answer fires may ask for a reconciliation of the same recording (``request``),
#: which is then already in flight, here.
_MANUAL: ContextVar[str | None] = ContextVar("agora_reconcile_manual", default=None)


def manual_sid() -> str | None:
    """The recording being reconciled on demand in this context (or None)."""
    return _MANUAL.get()


class NotEnabled(RuntimeError):
    """Reconciliation is off (``AGORA_APP_ID``, ``AGORA_CUSTOMER_ID``,
    ``AGORA_CUSTOMER_SECRET`` not set)."""


class NotRegistered(LookupError):
    """No ``resourceId``/mode registered for the recording (or it expired)."""


def _now_ms() -> int:
    return int(time.time() * 1000)


class Reconciler:
    """What one process needs to reconcile recordings: its Redis, a ``query`` client
    (keep-alive) and the shared rate limit."""

    def __init__(self, settings: Settings, client: redis.Redis, *,
                 rules: policy.Policy | None = None,
                 query_client: QueryClient | None = None,
                 rate_wait_s: float = RATE_WAIT_S,
                 now_ms: Callable[[], int] = _now_ms) -> None:
        if not settings.reconcile_enabled:
            raise NotEnabled("reconciliation with Agora's query is off: set AGORA_APP_ID, "
                             "AGORA_CUSTOMER_ID and AGORA_CUSTOMER_SECRET")
        self.settings = settings
        self.client = client
        self.rules = rules or policy.Policy()
        self.now_ms = now_ms
        app_id = str(settings.agora_app_id)
        self.query_client = query_client or QueryClient(
            settings.agora_rest_url, app_id, str(settings.agora_customer_id),
            str(settings.agora_customer_secret), RateLimiter(client, app_id),
            rate_wait_s=rate_wait_s)

    def registration(self, sid: str) -> registration.Registration:
        entry = registration.load(self.client, sid)
        if entry is None:
            raise NotRegistered(f"no resourceId registered for recording {sid} (or it "
                                "expired after AGORA_RESOURCE_TTL_S): register it with "
                                "POST /recordings/<sid>/resource or "
                                "agora_callbacks.register_recording")
        return entry

    def attempt(self, sid: str, reason: str,
                progress: policy.Progress | None = None) -> policy.Finish | policy.Retry:
        """One ``query`` call for ``sid`` and the step it leads to."""
        from agora_callbacks.workers.builtin import store

        entry = self.registration(sid)
        progress = progress or policy.Progress(started_ms=self.now_ms())
        stopped = policy.known_stopped(store.load(self.client, sid))
        answer = self.query_client.query(entry)
        step = policy.decide(answer, progress, now_ms=self.now_ms(), stopped=stopped,
                             reason=reason, mode=entry.mode, policy=self.rules)
        if isinstance(step, policy.Retry):
            log.info("reconcile.retry", sid=sid, reason=reason, answer=answer.kind,
                     http_status=answer.http_status, code=answer.code,
                     attempts=step.progress.attempts, delay_s=round(step.delay_s, 2),
                     why=step.why)
        else:
            facts = step.facts
            log.info("reconcile.answer", sid=sid, reason=reason, answer=answer.kind,
                     http_status=answer.http_status, code=answer.code,
                     outcome=facts["outcome"], status=facts["status"],
                     files=len(facts["files"]), attempts=progress.attempts + 1)
        return step

    def apply(self, sid: str, facts: dict[str, Any]) -> dict[str, Any] | None:
        """Fold ``facts`` into the record (created if the recording sent no event yet);
        the phases they decide fire. Returns the new record."""
        from agora_callbacks.workers.builtin import lifecycle

        return lifecycle.update_record(self.client, sid,
                                       lambda record: lifecycle.apply_query(record, facts),
                                       source="query", create=True, settings=self.settings)

    def close(self) -> None:
        self.query_client.close()


def run_blocking(reconciler: Reconciler, sid: str, reason: str, *,
                 sleep: Callable[[float], None] = time.sleep,
                 on_retry: Callable[[policy.Retry], None] | None = None,
                 ) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Reconcile ``sid`` now, sleeping between attempts; return the facts and the new
    record. Holds the recording's in-flight lease meanwhile (``inflight``);
    ``RuntimeError`` if a reconciliation is already in flight."""
    import uuid

    reconciler.registration(sid)  # NotRegistered before anything else
    token = f"manual-{uuid.uuid4().hex}"
    client = reconciler.client
    if not inflight.claim(client, sid, token):
        raise RuntimeError(f"a reconciliation of {sid} is already in flight "
                           f"({inflight.holder(client, sid)}); try again in a minute")
    manual = _MANUAL.set(sid)
    try:
        progress: policy.Progress | None = None
        while True:
            step = reconciler.attempt(sid, reason, progress)
            if isinstance(step, policy.Finish):
                return step.facts, reconciler.apply(sid, step.facts)
            if on_retry is not None:
                on_retry(step)
            sleep(step.delay_s)
            progress = step.progress
            inflight.refresh(client, sid, token)
    finally:
        _MANUAL.reset(manual)
        inflight.release(client, sid, token)
