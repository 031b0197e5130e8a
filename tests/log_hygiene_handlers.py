"""Handlers for the log hygiene tests (CALLBACK_HANDLERS=log_hygiene_handlers).

``hygiene.keep`` returns the event it was given (a handler's return value is not
used: Celery would print it in its "succeeded" line); ``hygiene.fail`` fails for
good, so the event is dead-lettered as ``handler_failed``.
"""

from __future__ import annotations

from typing import Any

from agora_callbacks.workers import on_event


@on_event("*", name="hygiene.keep")
def keep(event: Any) -> Any:
    return event


@on_event("*", name="hygiene.fail")
def fail(event: Any) -> None:
    raise RuntimeError("this handler never succeeds")
