"""Publishing handler tasks in the same Redis transaction as what depends on them.

Celery builds each task message and kombu routes, serializes and prioritizes it
as usual; only the final Redis commands (the ``LPUSH`` onto the queue's list)
are handed to the ``Outbox`` instead of being sent one by one. The caller then
sends them with the turn's commit (and, at the intake, the acknowledgement of
the inbox entries) in one ``MULTI``/``EXEC``: the publishes and what depends on
them happen together or not at all, in one round trip.

The hand-over uses kombu's publish-batch hook (kombu >= 5.7: ``Producer``'s
per-thread batch and the ``_publish_batch`` argument of the Redis channel's
``_put``). On a kombu without it, or another transport, each publish is simply
sent at once, as usual, and the Outbox stays empty: still correct, one round
trip per publish more.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from workers.scripts import Call, Pipe


def _command(pipe: Pipe, name: str, args: tuple[Any, ...]) -> object:
    return getattr(pipe, name)(*args)


class Outbox:
    """Collects the Redis commands of the publishes made while it is active.

    Implements the two methods kombu calls on a publish batch: ``publish`` (the
    producer routes a prepared message through it) and ``add`` (the Redis
    channel hands over one final command).
    """

    def __init__(self) -> None:
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, name: str, *args: Any) -> None:
        self.commands.append((name, args))

    def calls(self) -> list[Call]:
        """The collected commands, to run (first) in the caller's transaction."""
        return [partial(_command, name=name, args=args) for name, args in self.commands]


@contextmanager
def publishing() -> Iterator[tuple[Any, Outbox]]:
    """A Celery producer whose publishes land in the yielded Outbox."""
    from workers.app import celery_app

    outbox = Outbox()
    with celery_app.producer_or_acquire() as producer:
        local = getattr(producer, "_batch_local", None)
        if local is None or getattr(local, "current", None) is not None:
            yield producer, outbox  # no hook (or already batching): publish at once
            return
        local.current = outbox
        try:
            yield producer, outbox
        finally:
            del local.current
