"""Read and write a recording's folded state in Redis.

One JSON string per recording under ``keys.recording_state(sid)``, rewritten
whole after each event with ``SET ... EX RECORDING_STATE_TTL_S``: an idle
recording's state expires that long after its last event (guarantee 6). The
dashboard's index (``agora_callbacks.recordings_index``) is written in the same
transaction.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from agora_callbacks import keys, recordings_index


def load(client: redis.Redis, sid: str) -> dict[str, Any] | None:
    """The stored state of ``sid``, or None if there is none (never seen, or expired)."""
    raw: Any = client.get(keys.recording_state(sid))
    if raw is None:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def dumps(state: dict[str, Any]) -> str:
    """Canonical JSON of a state: sorted keys, no spaces, so equal states are equal bytes."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def save(client: redis.Redis, sid: str, state: dict[str, Any], ttl_s: int) -> None:
    """Write the state of ``sid`` and (re)start its expiry, with the dashboard's index
    of it, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.recording_state(sid), dumps(state), ex=ttl_s)
    recordings_index.queue_update(pipe, sid, state, ttl_s)
    pipe.execute()
