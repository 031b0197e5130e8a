"""Reconciliation with Agora's ``query`` REST call: what NCS lost, asked for.

NCS loses and reorders notifications; Agora advises confirming with ``query`` when
accuracy matters. When a recording stalls, reports a fatal error, or a gap skipped
events that decide a phase, the lifecycle calls ``request(sid, reason)``; a worker
then calls ``query`` (``client``, under the shared rate limit of ``ratelimit``,
retried per ``policy``), turns the answer into facts (``observe``, pure) and folds
them into the record with ``source: "query"`` (``run``), which may fire the phases
they decide. ``agora-callbacks recording SID --reconcile`` does it on demand.

On when ``AGORA_APP_ID``, ``AGORA_CUSTOMER_ID`` and ``AGORA_CUSTOMER_SECRET`` are
set. ``query`` needs the recording's ``resourceId`` and mode, which callbacks do
not carry: the backend that started the recording registers them
(``register_recording``, or ``POST /recordings/<sid>/resource``; ``registration``).

Modules: ``registration`` (stored resourceId/mode), ``register`` (the Python call),
``ratelimit`` (+ ``ratelimit.lua``), ``client`` (one HTTP call, classified into one
of the kinds of ``answers``), ``observe`` (answer -> facts), ``policy`` (retry or
finish), ``inflight`` (one per sid), ``run`` (attempt, apply, the blocking driver),
``requests`` (``request``), ``task`` (the Celery task), ``manual`` (``recording
--reconcile``). The names below load on first use: importing this package does not
import Celery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agora_callbacks.reconcile.register import register_recording
    from agora_callbacks.reconcile.requests import request

__all__ = ["register_recording", "request"]

_PUBLIC = {
    "register_recording": "agora_callbacks.reconcile.register",
    "request": "agora_callbacks.reconcile.requests",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'agora_callbacks.reconcile' has no attribute {name!r}")
    return getattr(import_module(module), name)
