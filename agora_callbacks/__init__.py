"""Receive Agora Cloud Recording callbacks (NCS) and act on them reliably.

The pipeline lives in three subpackages, in the order a callback travels:
``agora_callbacks.ingress`` (verify and store), ``agora_callbacks.schemas`` (typed
events) and ``agora_callbacks.workers`` (dedupe, order, dispatch). The modules
beside them hold what they share: settings, Redis key names, the inbox hand-off,
dead letters, logging, the CLI.

Public API::

    from agora_callbacks import on_event, parse_event, InvalidEvent, Event, dedupe_key

The names load on first use, so that ``import agora_callbacks`` (the CLI, the
ingress) does not import Celery.
"""

from __future__ import annotations

from importlib import import_module, metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agora_callbacks.reconcile import register_recording
    from agora_callbacks.schemas import Event, InvalidEvent, parse_event
    from agora_callbacks.workers import dedupe_key, on_event
    from agora_callbacks.workers.hooks import on_recording

try:
    __version__: str = metadata.version("agora-callbacks")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

_PUBLIC = {
    "on_event": "agora_callbacks.workers",
    "dedupe_key": "agora_callbacks.workers",
    "parse_event": "agora_callbacks.schemas",
    "InvalidEvent": "agora_callbacks.schemas",
    "Event": "agora_callbacks.schemas",
    "register_recording": "agora_callbacks.reconcile",
    "on_recording": "agora_callbacks.workers.hooks",
}

__all__ = ["Event", "InvalidEvent", "__version__", "dedupe_key", "on_event", "parse_event"]
__all__ += ["register_recording"]
__all__ += ["on_recording"]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'agora_callbacks' has no attribute {name!r}")
    return getattr(import_module(module), name)
