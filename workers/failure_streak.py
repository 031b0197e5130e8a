"""One log line per outage, not one per failed round of a loop (the intake's)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


class FailureStreak:
    """The rounds of a loop that failed in a row, and what to log about them: the
    first failure of a streak, or of another class than the one before, with its
    traceback; then, while they go on, one reminder every ``remind_s`` with how many
    rounds failed and for how long; and one line when a round succeeds again. A
    Redis outage under a loop that tries every half second is three lines a minute
    at most, not 120 tracebacks."""

    def __init__(self, log: Any, what: str, remind_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.what = what
        self.remind_s = remind_s
        self.clock = clock
        self.failed = 0
        self.since = 0.0
        self.kind = ""
        self.next_reminder = 0.0

    def failed_round(self, exc: BaseException) -> None:
        """A round failed with ``exc`` (call it in the ``except`` block)."""
        now = self.clock()
        # Of a kind by its class: the text of one outage's errors changes ("Connection
        # closed by server", then "Error 111 connecting ...").
        kind = type(exc).__name__
        if self.failed == 0 or kind != self.kind:
            if self.failed == 0:
                self.since = now
            self.log.exception(f"{self.what} failed; trying again",
                               failed_rounds=self.failed + 1,
                               for_s=round(now - self.since, 1))
            self.kind = kind
            self.next_reminder = now + self.remind_s
        elif now >= self.next_reminder:
            self.log.warning(f"{self.what} still failing", error=f"{kind}: {exc}"[:300],
                             failed_rounds=self.failed + 1, for_s=round(now - self.since, 1))
            self.next_reminder = now + self.remind_s
        self.failed += 1

    def succeeded(self) -> None:
        """A round went through: the end of a streak, if one was going on."""
        if self.failed:
            self.log.info(f"{self.what} succeeds again", failed_rounds=self.failed,
                          for_s=round(self.clock() - self.since, 1))
            self.failed = 0
            self.kind = ""
