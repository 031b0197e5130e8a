"""Registering a throwaway ``@on_event`` handler in a test (removed again at once)."""

from __future__ import annotations

import uuid
from typing import Any

from agora_callbacks.workers import REGISTRY, on_event


def register_throwaway(selector: int, prefix: str, **options: Any) -> Any:
    """Register a no-op handler of ``selector`` with ``options`` (raising what
    registration raises), remove it from the registry, and return it (its Celery
    task is ``.task``). ``selector``: an eventType no other test's events have."""
    name = f"{prefix}.h_{uuid.uuid4().hex[:8]}"

    def handler(event: Any) -> None:  # pragma: no cover - registered, never run
        pass

    try:
        on_event(selector, name=name, **options)(handler)
    finally:
        REGISTRY.remove(name)
    return handler
