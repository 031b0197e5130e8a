"""Agora's ``query`` rate limit, shared by every process: a sliding window in Redis.

Agora allows 10 ``query`` requests per second per App ID, all callers together.
``ratelimit.lua`` lets a call through only if fewer than ``limit`` were let through
in the last ``window_ms`` by Redis's clock (a sorted set of at most ``limit``
members per App ID, ``keys.query_rate``), so no process, thread or host sharing the
Redis ever exceeds it. The window is one second plus ``JITTER_MS``: a request
reaches Agora a little after it was let through, and not always equally late, so
10 calls let through in exactly one second could land in one second of Agora's
with an 11th; the margin absorbs that spread (effective rate 8 per second).
"""

from __future__ import annotations

import random
import time
import uuid
from pathlib import Path

import redis

from agora_callbacks import keys

#: Agora's limit: requests per second per App ID.
QUERY_LIMIT = 10
#: Spread of the delay between being let through and reaching Agora, in ms.
JITTER_MS = 250
SCRIPT = Path(__file__).with_name("ratelimit.lua").read_text()


class RateLimitTimeout(TimeoutError):
    """No slot within the time the caller was willing to wait; ``wait_s``: how long
    the limiter last said to wait."""

    def __init__(self, message: str, wait_s: float) -> None:
        super().__init__(message)
        self.wait_s = wait_s


class RateLimiter:
    """``acquire()`` before each request; ``limit`` calls per ``window_ms`` at most."""

    def __init__(self, client: redis.Redis, app_id: str, *, limit: int = QUERY_LIMIT,
                 window_ms: int = 1000 + JITTER_MS) -> None:
        self._script = client.register_script(SCRIPT)
        self._key = keys.query_rate(app_id)
        self.limit = limit
        self.window_ms = window_ms

    def try_acquire(self) -> int:
        """0 when a call may go now (counted), else the ms to wait before asking again."""
        token = uuid.uuid4().hex
        return int(self._script(keys=[self._key], args=[self.limit, self.window_ms, token]))

    def acquire(self, timeout_s: float) -> float:
        """Wait for a slot; return the seconds waited. ``RateLimitTimeout`` after
        ``timeout_s`` without one."""
        started = time.monotonic()
        deadline = started + timeout_s
        while True:
            wait_ms = self.try_acquire()
            if wait_ms == 0:
                return time.monotonic() - started
            # A little random spread, so that waiting callers do not all ask at once.
            pause = wait_ms / 1000 + random.uniform(0, 0.02)
            if time.monotonic() + pause > deadline:
                raise RateLimitTimeout(f"no query slot within {timeout_s:g} s", pause)
            time.sleep(pause)
