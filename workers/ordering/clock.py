"""The one clock every decision of the protocol reads.

In production it is Redis's clock: the scripts read it themselves (``script_ms``
gives them 0, which makes them call ``TIME``), and the Python side asks Redis
(``now_ms``), so hosts whose clocks differ still agree. A test replaces it with a
clock it drives (``tests/sim``), which makes a run reproducible from its seed.
"""

from __future__ import annotations

import time
from typing import Any


class RedisClock:
    """Redis's clock; ``sleep`` and ``monotonic`` are the host's."""

    def script_ms(self) -> int:
        """The ``now_ms`` argument of a script: 0, the script reads Redis's clock."""
        return 0

    def now_ms(self, client: Any) -> int:
        """Redis's time in unix milliseconds (one round trip)."""
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def monotonic(self) -> float:
        """Seconds on a clock that only moves forward (the time a retry took)."""
        return time.monotonic()
