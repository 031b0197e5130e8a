"""Celery workers: every stored callback handled once, in order per recording.

Public API::

    from agora_callbacks.workers import on_event

    @on_event("uploaded")      # by msgName
    @on_event(31)              # by eventType
    @on_event("*")             # every event
    def store_files(event, key, late, gap): ...

- ``on_event``: register a handler (``workers.registry``).
- ``dedupe_key``: the key a handler receives as ``key=``, for its own idempotency.
- ``HandlerTask``: the Celery task base class of every handler.
- ``celery_app`` (in ``agora_callbacks.workers.app``): the Celery app; run a worker with
  ``celery -A agora_callbacks.workers.app:celery_app worker``.
"""

from __future__ import annotations

from typing import Any

from agora_callbacks.workers.dedupe import dedupe_key
from agora_callbacks.workers.registry import REGISTRY, Handler, on_event

__all__ = ["REGISTRY", "Handler", "HandlerTask", "dedupe_key", "on_event"]


def __getattr__(name: str) -> Any:
    if name == "HandlerTask":
        from agora_callbacks.workers.task import HandlerTask

        return HandlerTask
    raise AttributeError(name)
