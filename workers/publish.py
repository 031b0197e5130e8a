"""Publishing handler tasks through Celery's public API.

Nothing depends on a publish: a handler task starts only once ``start`` admitted
it (see ``workers.dispatch``), so a message published twice, late or never is
harmless (never: the turn is published again after its publish lease).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from celery import Celery

from agora_callbacks.logs import get_logger
from agora_callbacks.workers.registry import REGISTRY
from agora_callbacks.workers.runtime import Publish

log = get_logger("workers.publish")


def celery_publisher(app: Celery) -> Publish:
    """A publisher that sends one task per handler name on ``app``.

    Each thread keeps one producer from the app's producer pool (taken again in a
    forked child) instead of taking one from the pool for every message: about
    0.3 ms of CPU less per message on the development VM."""
    local = threading.local()

    def producer() -> Any:
        held = getattr(local, "held", None)
        if held is None or held[0] != os.getpid():
            held = local.held = (os.getpid(), app.producer_pool.acquire(block=True))
        return held[1]

    def publish(names: Sequence[str], args: list[Any]) -> None:
        # The task's args as Flower and the logs show them: the recording, the
        # event's place and key, not the raw body (and Celery need not repr the
        # body: that was a third of the cost of a publish).
        shown = f"(sid={args[0]!r}, member={args[1]!r}, key={args[2]!r}, " \
                f"late={args[3]}, gap={args[4]})"
        for name in names:
            handler = REGISTRY.get(name)
            if handler is not None:
                handler.task.apply_async(args=args, argsrepr=shown, kwargsrepr="{}",
                                         producer=producer())
            else:
                log.warning("handler not registered here, sent by name", handler=name)
                app.send_task(name, args=args, argsrepr=shown, kwargsrepr="{}",
                              producer=producer())

    return publish
