"""``workers.failure_streak``: one log line per outage of a loop, not one per round
(the intake's loop through a real Redis outage: ``test_workers_intake``)."""

from __future__ import annotations

from typing import Any

import redis

from agora_callbacks.workers.failure_streak import FailureStreak


class Lines:
    """A logger that keeps (level, event, fields) of each line."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Any:
        def line(event: str, **fields: Any) -> None:
            self.lines.append((level, event, fields))
        return line

    def events(self) -> list[str]:
        return [event for _, event, _ in self.lines]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_streak_is_one_line_then_a_reminder_a_minute_then_one_line_at_its_end() -> None:
    log, clock = Lines(), Clock()
    streak = FailureStreak(log, "round", remind_s=60, clock=clock)
    down = redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")
    for i in range(100):  # 50 s of rounds every 0.5 s: the first one only, whatever its text
        streak.failed_round(down if i % 2 else redis.ConnectionError("Connection closed"))
        clock.now += 0.5
    assert log.lines == [("exception", "round failed; trying again",
                          {"failed_rounds": 1, "for_s": 0.0})]
    for _ in range(40):  # past a minute: one reminder, with the count and the time
        streak.failed_round(down)
        clock.now += 0.5
    assert log.lines[1] == ("warning", "round still failing",
                            {"error": f"ConnectionError: {down}", "failed_rounds": 121,
                             "for_s": 60.0})
    assert len(log.lines) == 2
    streak.failed_round(redis.exceptions.BusyLoadingError("loading"))  # another kind: said
    assert log.lines[2][:2] == ("exception", "round failed; trying again")
    assert log.lines[2][2]["failed_rounds"] == 141
    streak.succeeded()
    streak.succeeded()  # no streak: nothing to say
    assert log.lines[3] == ("info", "round succeeds again", {"failed_rounds": 141,
                                                             "for_s": 70.0})
    assert len(log.lines) == 4
    streak.failed_round(down)  # a new streak starts from its own first round
    assert log.lines[4] == ("exception", "round failed; trying again",
                            {"failed_rounds": 1, "for_s": 0.0})
