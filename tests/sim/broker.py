"""A simulated task broker (Celery over a queue with late acknowledgement).

``publish`` is the runtime's publisher: one message per handler name, each with a
new task id. A message is delivered to one executor and stays unacknowledged
until the executor acknowledges it; if it is not acknowledged within the
visibility timeout (the executor died, or is stalled) it is delivered again, with
the same task id. Faults: a publish that fails (before any message, or after some
of them), a message lost (never delivered), a message delivered twice (a second
copy with the same task id), deliveries out of order. A Celery retry is a new
message with the same task id, delivered after its countdown.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


class PublishError(Exception):
    """The broker refused a publish (kombu's OperationalError, say)."""


@dataclass
class Message:
    task_id: str
    name: str
    args: list[Any]
    ready_at: int = 0  # virtual ms (a retry's countdown)
    deliveries: int = 0
    tag: int = 0


@dataclass
class Broker:
    rng: random.Random
    now: Callable[[], int]
    checkpoint: Callable[[str], str | None]
    visibility_ms: int
    faults: Callable[[str], bool]  # faults("msg_lost") -> inject this fault now?
    count: Callable[[str], None]
    note: Callable[[str], None] = lambda _s: None
    ready: list[Message] = field(default_factory=list)
    unacked: dict[int, tuple[Message, int]] = field(default_factory=dict)
    published: list[Message] = field(default_factory=list)
    lost: list[Message] = field(default_factory=list)
    max_wait_ms: int = 0  # longest a message waited in the queue before a delivery
    _ids: int = 0
    _tags: int = 0

    def new_task_id(self) -> str:
        self._ids += 1
        return f"task-{self._ids}"

    # -- the runtime's publisher -------------------------------------------------------
    def publish(self, names: Sequence[str], args: list[Any]) -> None:
        fault = self.checkpoint("publish")
        for i, name in enumerate(names):
            if fault is not None and (fault == "before" or i == len(names) // 2):
                self.count("publish_error")
                raise PublishError(f"sim: publish of {name} failed")
            msg = Message(self.new_task_id(), name, list(args), ready_at=self.now())
            self.published.append(msg)
            self.note(f"published {name} task={msg.task_id} args={args[:3]}")
            if self.faults("msg_lost"):
                self.note(f"message of task {msg.task_id} LOST")
                self.lost.append(msg)
                continue
            self._enqueue(msg)
            if self.faults("msg_dup"):
                self.note(f"message of task {msg.task_id} DUPLICATED")
                self._enqueue(Message(msg.task_id, name, list(args), ready_at=self.now()))

    def retry(self, msg: Message, countdown_ms: int) -> None:
        """A Celery retry: the same task id again, after a countdown."""
        self._enqueue(Message(msg.task_id, msg.name, list(msg.args),
                              ready_at=self.now() + countdown_ms))

    def _enqueue(self, msg: Message) -> None:
        self.ready.append(msg)

    # -- the executors' side -----------------------------------------------------------
    def redeliver_expired(self) -> None:
        now = self.now()
        for tag in [t for t, (_, vis) in self.unacked.items() if vis <= now]:
            msg, _ = self.unacked.pop(tag)
            self.count("redelivered")
            msg.ready_at = now
            self.ready.append(msg)

    def deliverable(self) -> list[Message]:
        now = self.now()
        return [m for m in self.ready if m.ready_at <= now]

    def deliver(self, reorder: bool) -> Message | None:
        self.redeliver_expired()
        candidates = self.deliverable()
        if not candidates:
            return None
        msg = self.rng.choice(candidates[:4]) if reorder else candidates[0]
        self.ready.remove(msg)
        self.max_wait_ms = max(self.max_wait_ms, self.now() - msg.ready_at)
        self._tags += 1
        msg.tag = self._tags
        msg.deliveries += 1
        self.unacked[msg.tag] = (msg, self.now() + self.visibility_ms)
        return msg

    def requeue(self, msg: Message) -> None:
        """A rejected delivery goes back to the queue at once."""
        if self.unacked.pop(msg.tag, None) is not None:
            msg.ready_at = self.now()
            self.ready.append(msg)

    def ack(self, msg: Message) -> None:
        self.unacked.pop(msg.tag, None)

    def idle(self) -> bool:
        return not self.ready and not self.unacked

    def next_due(self) -> int | None:
        times = [m.ready_at for m in self.ready] + [v for _, v in self.unacked.values()]
        return min(times) if times else None
