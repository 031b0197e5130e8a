"""A recording's events delivered the way NCS and the ordering layer may deliver
them (lost, duplicated, reordered, late, with silences), folded and evaluated the
way the workers do: at each fold, and when ``phases.next_due_ms`` says.

Used by the lifecycle property tests (``tests/test_lifecycle_properties.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agora_callbacks.schemas import parse_event
from agora_callbacks.simulate.lifecycles import encode
from agora_callbacks.workers.builtin import phases
from agora_callbacks.workers.builtin.lifecycle import fold_change

SETTLE = 30_000
STALL = 300_000
T0 = 1_800_000_000_000


@dataclass(frozen=True)
class Delivery:
    """One envelope as it reaches the fold, ``wait_ms`` after the previous one."""

    envelope: dict[str, Any]
    wait_ms: int
    key_suffix: str = ""  # a copy that escaped dedupe under another key


@dataclass
class Worker:
    """The record of one recording, folded and evaluated as the workers do it."""

    record: dict[str, Any] | None = None
    now: int = T0
    fired: list[str] = field(default_factory=list)
    folded: set[int] = field(default_factory=set)
    sizes: list[int] = field(default_factory=list)

    def deliver(self, delivery: Delivery) -> None:
        self.run_timers_until(self.now + delivery.wait_ms)
        event = parse_event(encode(delivery.envelope))
        sequence = event.sequence
        highest = max(self.folded) if self.folded else -1
        late = sequence is not None and sequence < highest
        gap = None
        if sequence is not None and sequence > highest + 1 and not late:
            gap = (highest + 1, sequence - 1)
        key = f"{event.sid}:{event.event_type}:{sequence}{delivery.key_suffix}"
        changed = fold_change(event, key=key, late=late, gap=gap)(self.record, self.now)
        if changed is None:
            return
        self.record = changed
        if sequence is not None:
            self.folded.add(sequence)
        self.evaluate()

    def evaluate(self) -> list[str]:
        assert self.record is not None
        new = phases.evaluate(self.record, self.now, settle_ms=SETTLE, stall_ms=STALL)
        for phase in new:  # decided by an event already folded (or by time alone)
            sequence = self.record["lifecycle"]["fired"][phase]["sequence"]
            assert sequence is None or sequence in self.folded, (phase, sequence)
        phases.reconcile_reasons(self.record, self.now)
        self.record["lifecycle"]["pending"] = []  # hooks published
        self.fired += new
        self.sizes.append(len(repr(self.record)))
        return new

    def due(self) -> int:
        assert self.record is not None
        return phases.next_due_ms(self.record, self.now, settle_ms=SETTLE, stall_ms=STALL)

    def run_timers_until(self, until_ms: int, max_ticks: int = 20) -> None:
        """The timer sweep: evaluate at each due time up to ``until_ms``."""
        for _ in range(max_ticks):
            if self.record is None:
                break
            due = self.due()
            if due == 0 or due > until_ms:
                break
            self.now = due
            self.evaluate()
        self.now = max(self.now, until_ms)

    def run_timers_out(self) -> None:
        """Every timer run out: the recording left alone for a long time."""
        self.run_timers_until(self.now + 100 * STALL)

    def info(self, phase: str) -> dict[str, Any]:
        assert self.record is not None
        info: dict[str, Any] = self.record["lifecycle"]["fired"][phase]
        return info


def deliver_all(deliveries: list[Delivery]) -> Worker:
    worker = Worker()
    for delivery in deliveries:
        worker.deliver(delivery)
    return worker
