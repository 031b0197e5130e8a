"""What to do after one ``query`` answer: finish with the facts, or try again later (pure).

- ``ok``: finish, ``outcome: "active"``.
- ``not_found``: once the recording is known to have stopped (its record holds an
  exit, a stop time, or a fired ``finished``/``failed``), the session ended. Before
  that a ``404`` may be a failover under way (Agora: up to about 30 s after a
  recorder process crash, up to about a minute while it reconnects after a network
  loss), so it is asked again with backoff until ``failover_window_s`` after the
  first ``404``; a ``404`` past the window is read as "ended" too.
- ``retry`` (timeouts, ``206``/code 65, ``429``, ``5xx``/code 62): asked again with
  backoff until ``error_budget_s`` after the answer to the first call sent, then
  ``outcome: "error"``.
- ``error`` (``400``, ``401``, a wrong URL): ``outcome: "error"`` at once.
- ``throttled`` (no rate-limit slot; nothing was sent): asked again after the
  answer's ``retry_after_s``; the progress is kept as it was: waiting for a slot
  says nothing about the recording. Before the first call the wait is outside every
  budget (they start with that call's answer); between two calls it is time like
  any other.

Backoff: ``backoff_first_s`` doubled after every attempt, at most ``backoff_max_s``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from agora_callbacks.reconcile import observe
from agora_callbacks.reconcile.client import Answer


@dataclass(frozen=True)
class Policy:
    failover_window_s: float = 60.0
    error_budget_s: float = 60.0
    backoff_first_s: float = 1.0
    backoff_max_s: float = 15.0

    def backoff_s(self, attempts: int) -> float:
        return float(min(self.backoff_max_s,
                         self.backoff_first_s * 2 ** max(0, min(attempts - 1, 30))))


@dataclass(frozen=True)
class Progress:
    """Where one reconciliation stands between its attempts (JSON-ready: it travels
    in the Celery task's arguments)."""

    #: When the reconciliation started; once the first call was sent, when its answer
    #: came (the error budget's start: waiting for a slot before it is not Agora
    #: failing).
    started_ms: int
    attempts: int = 0
    first_not_found_ms: int | None = None

    def answered(self, now_ms: int) -> Progress:
        """This progress after a call sent (not ``throttled``), answered at ``now_ms``."""
        started = now_ms if self.attempts == 0 else self.started_ms
        return replace(self, started_ms=started, attempts=self.attempts + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, value: Mapping[str, Any] | None, now_ms: int) -> Progress:
        if not value:
            return cls(started_ms=now_ms)
        return cls(started_ms=int(value["started_ms"]), attempts=int(value["attempts"]),
                   first_not_found_ms=value.get("first_not_found_ms"))


@dataclass(frozen=True)
class Finish:
    facts: dict[str, Any]


@dataclass(frozen=True)
class Retry:
    delay_s: float
    progress: Progress
    why: str


def known_stopped(record: Mapping[str, Any] | None) -> bool:
    """The record shows the recording stopped: an exit (11), a fired ``finished`` or
    ``failed`` phase, or a stop time (a recorder leaving, web recording stopping) with
    no failover (12) after it: a recorder that crashed leaves, and its replacement
    answers ``query`` only once it has taken over."""
    if not record:
        return False
    times = record.get("times") or {}
    fired = ((record.get("lifecycle") or {}).get("fired") or {})
    if record.get("exit") or times.get("exited_ms") or "finished" in fired \
            or "failed" in fired:
        return True
    stopped = times.get("stopped_ms")
    if not isinstance(stopped, int):
        return False
    failovers = [f["at_ms"] for f in record.get("failovers") or []
                 if isinstance(f, Mapping) and isinstance(f.get("at_ms"), int)]
    return not any(at >= stopped for at in failovers)


def decide(answer: Answer, progress: Progress, *, now_ms: int, stopped: bool,
           reason: str, mode: str | None, policy: Policy = Policy()) -> Finish | Retry:
    """The next step after ``answer``, the ``progress.attempts``-th+1 attempt."""
    if answer.kind == "throttled":
        return Retry(max(answer.retry_after_s or 1.0, 0.05), progress,
                     answer.reason or "rate limit")
    progress = progress.answered(now_ms)
    common: dict[str, Any] = {"at_ms": now_ms, "reason": reason, "mode": mode}
    if answer.kind == "ok":
        return Finish(observe.active(answer.body or {}, **common))
    if answer.kind == "not_found":
        if stopped:
            return Finish(observe.ended(why="404 after the recording stopped", **common))
        first = progress.first_not_found_ms if progress.first_not_found_ms is not None \
            else now_ms
        waited_s = (now_ms - first) / 1000
        if waited_s >= policy.failover_window_s:
            return Finish(observe.ended(
                why=f"404 for the whole failover window ({policy.failover_window_s:g} s)",
                **common))
        delay = min(policy.backoff_s(progress.attempts), policy.failover_window_s - waited_s)
        return Retry(max(delay, 0.05), replace(progress, first_not_found_ms=first),
                     "404: the session ended, or a failover is under way")
    if answer.kind == "retry":
        spent_s = (now_ms - progress.started_ms) / 1000
        if spent_s >= policy.error_budget_s:
            return Finish(observe.error(answer, **common))
        delay = min(policy.backoff_s(progress.attempts), policy.error_budget_s - spent_s)
        return Retry(max(delay, 0.05), progress, answer.reason or "retry")
    return Finish(observe.error(answer, **common))
