"""The pipeline's health as the dashboard shows it: the Prometheus figures, from Redis.

The gauges and counters come from ``metrics.RedisCollector`` itself (the same code
that answers a scrape, so the page and ``/metrics`` cannot disagree); the last
hour's dead letters, by kind and reason and by failed handler, are counted from the
dead-letter stream (its entry ids are unix ms), reading at most ``WINDOW_LIMIT``.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from agora_callbacks import keys, metrics

#: Most dead letters counted for the last hour (the page says "at least" beyond).
WINDOW_LIMIT = 10_000
HOUR_MS = 3_600_000


@dataclass
class Health:
    """Figures by Prometheus metric name, and the last hour's dead letters."""

    up: bool
    figures: dict[str, float] = field(default_factory=dict)
    deadletters_by_kind: dict[tuple[str, str], int] = field(default_factory=dict)
    failures_by_handler: dict[str, int] = field(default_factory=dict)
    window_truncated: bool = False

    def figure(self, name: str) -> float:
        return self.figures.get(name, 0.0)


def read(client: redis.Redis, now_ms: int | None = None) -> Health:
    """The pipeline's figures now; ``up`` False (and nothing else) when Redis is away."""
    figures: dict[str, float] = {}
    for family in metrics.RedisCollector(client).collect():
        for sample in family.samples:
            if not sample.labels:
                figures[sample.name] = float(sample.value)
    health = Health(up=figures.get("acb_redis_up", 0.0) == 1.0, figures=figures)
    if not health.up:
        return health
    now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
    try:
        rows: Any = client.xrevrange(keys.DEADLETTERS, "+", str(now_ms - HOUR_MS),
                                count=WINDOW_LIMIT)
    except redis.RedisError:
        return health
    by_kind: Counter[tuple[str, str]] = Counter()
    by_handler: Counter[str] = Counter()
    for _, fields in rows:
        kind = fields.get(b"kind", b"").decode("utf-8", "replace")
        by_kind[(kind, fields.get(b"reason", b"").decode("utf-8", "replace"))] += 1
        if kind == "handler":
            by_handler[fields.get(b"handler", b"").decode("utf-8", "replace")] += 1
    health.deadletters_by_kind = dict(sorted(by_kind.items()))
    health.failures_by_handler = dict(by_handler.most_common())
    health.window_truncated = len(rows) >= WINDOW_LIMIT
    return health
