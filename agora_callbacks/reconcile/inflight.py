"""One reconciliation in flight per recording: a lease in Redis, held by a token.

``claim`` takes it (``SET NX EX``) for the task id that will run it; the task
refreshes it at every attempt and releases it when done (compare-and-delete, so a
task whose lease expired never deletes a newer holder's). A worker that dies
mid-reconciliation leaves the lease to expire after ``LEASE_S``; a second
reconciliation after that is harmless (the fold of ``query`` facts is idempotent
and phases fire at most once).
"""

from __future__ import annotations

from typing import Any

import redis

from agora_callbacks import keys

#: Lease of one reconciliation: above the longest pause between its attempts
#: (``Policy.backoff_max_s``) plus one attempt (rate-limit wait and HTTP timeout).
LEASE_S = 120

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def claim(client: redis.Redis, sid: str, token: str, ttl_s: int = LEASE_S) -> bool:
    """Take the lease for ``token``; False when another reconciliation holds it."""
    return bool(client.set(keys.recording_reconcile(sid), token, nx=True, ex=ttl_s))


def holder(client: redis.Redis, sid: str) -> str | None:
    raw: Any = client.get(keys.recording_reconcile(sid))
    return raw.decode() if isinstance(raw, bytes) else raw


def refresh(client: redis.Redis, sid: str, token: str, ttl_s: int = LEASE_S) -> bool:
    """Extend the lease if ``token`` still holds it (else False: someone else does)."""
    script = client.register_script(_REFRESH)
    return bool(script(keys=[keys.recording_reconcile(sid)], args=[token, ttl_s]))


def release(client: redis.Redis, sid: str, token: str) -> bool:
    """Give the lease up if ``token`` holds it."""
    script = client.register_script(_RELEASE)
    return bool(script(keys=[keys.recording_reconcile(sid)], args=[token]))
