"""Publishing handler tasks in the same Redis step as what depends on them.

Celery builds each task message and kombu routes, serializes and prioritizes it
as usual; only the final Redis commands (the ``LPUSH`` onto the queue's list)
are handed to the ``Outbox`` instead of being sent one by one. The caller then
sends them with what depends on them, in one round trip:

- the pushes of an ordered event's handler tasks go to its turn's ``commit``
  (``commit.lua``, see ``Dispatcher.settle``): the script pushes them if, and
  only if, the turn is still taken by the take that published them. A publisher
  delayed past ``DISPATCH_LEASE_MS``, whose turn the timer sweep (or another
  worker) took again and published meanwhile, then pushes nothing: an event is
  never dispatched twice;
- the pushes of unordered events are sent in the caller's ``MULTI``/``EXEC`` with
  the acknowledgement of their inbox entries (``Outbox.calls``).

The hand-over uses kombu's publish-batch hook (kombu >= 5.7: ``Producer``'s
per-thread batch and the ``_publish_batch`` argument of the Redis channel's
``_put``). On a kombu without it, or another transport (or when the producer is
already batching), each publish is simply sent at once, as usual, and the
Outbox stays empty. Nothing is lost then (the messages are sent before the
commit, and a turn that is not committed is taken again after its lease), but
the "never twice" promise weakens to "at least once": a publisher delayed past
``DISPATCH_LEASE_MS`` has already sent its messages when its commit is refused,
so the event's handlers may run twice (the ``key=`` each handler receives is
there for that). See the README's "How the workers keep their promises".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

from workers.ordering import Push
from workers.scripts import Call, Pipe

#: The final commands of kombu's Redis publishes that ``commit.lua`` can send.
CONDITIONAL = frozenset({"lpush", "rpush", "pexpire", "publish"})


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

    def mark(self) -> int:
        """A position, for ``pushes_since``."""
        return len(self.commands)

    def pushes_since(self, mark: int) -> list[Push]:
        """Remove the commands collected since ``mark`` and return them as pushes
        for ``commit.lua`` (empty when the publishes were sent at once)."""
        taken, self.commands[mark:] = self.commands[mark:], []
        pushes: list[Push] = []
        for name, args in taken:
            if name not in CONDITIONAL or len(args) != 2:
                raise ValueError(f"a publish produced {name}{args!r}, which commit.lua "
                                 f"cannot send (only {sorted(CONDITIONAL)} with a key "
                                 f"and a value)")
            pushes.append((name, args[0], args[1]))
        return pushes

    def calls(self) -> list[Call]:
        """The commands left (not handed to a commit), to run in the caller's
        transaction."""
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
