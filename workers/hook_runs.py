"""The two ends of a lifecycle hook's run in Redis: its claim and its outcome.

A hook runs once per recording and phase (``workers.hooks``). Its claim key
(``hook_key``; a re-run from a dead letter has a key of its own, ``claim_key``)
holds the task id of the copy that claimed the run (``claim``: ``SET NX``; the
same task may run again, a Celery retry or a redelivery after its process died)
until the run has an outcome. ``record_outcome`` then sets it to ``done`` or
``failed`` (``hook_outcome.lua``, beside this module), and writes the dead letter
of a failure (kind ``hook``) in the same step, only if the key still holds this
task id, or holds nothing (the claim lapsed during a long run or retries, and no
other copy took it since): an outcome is recorded once, and no copy of the task,
with this task id or another, runs the hook again.

A Redis error here is the caller's to retry (``workers.dispatch.retrying``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis

from agora_callbacks import keys, recordings_index
from agora_callbacks.workers.ordering import Failure, scripts

#: The outcome script (its header says KEYS, ARGV and the reply).
OUTCOME_LUA = Path(__file__).with_name("hook_outcome.lua")
#: What a claim key holds once the run has an outcome.
DONE = "done"
FAILED = "failed"
#: ``record_outcome``'s reply when the claim is not this task's.
STALE = "stale"


def hook_key(sid: str, phase: str, name: str) -> str:
    """String: the task id that claimed the run of hook ``name`` for ``phase``, then
    its outcome (``done``, ``failed``)."""
    return keys.recording_hook(sid, phase, name)


def claim_key(sid: str, phase: str, name: str, info: dict[str, Any]) -> str:
    """The claim key of this run: ``hook_key``, or for a re-run from dead letter
    ``info["redrive"]`` a key of its own (the phase's key says ``failed``)."""
    key = hook_key(sid, phase, name)
    redrive = info.get("redrive")
    return f"{key}:dlq:{redrive}" if redrive else key


@dataclass(frozen=True)
class HookRun:
    """One run of a hook: the task's arguments, its task name and its task id."""

    sid: str
    phase: str
    info: dict[str, Any]
    record: dict[str, Any]
    name: str
    task_id: str

    @classmethod
    def of(cls, args: tuple[Any, ...] | list[Any], name: str, task_id: str) -> HookRun:
        """From the task's arguments ``(sid, phase, info, record)``."""
        sid, phase, info, record = args
        return cls(sid=str(sid), phase=str(phase), info=dict(info or {}),
                   record=dict(record or {}), name=name, task_id=task_id)

    @property
    def key(self) -> str:
        return claim_key(self.sid, self.phase, self.name, self.info)


def claim(client: redis.Redis, run: HookRun, ttl_s: int) -> bool:
    """May this copy run the hook? The first copy claims the run; the same task id
    may run it again until its outcome is recorded; any other copy may not."""
    if client.set(run.key, run.task_id, nx=True, ex=ttl_s):
        return True
    owner = client.get(run.key)
    return (owner.decode() if isinstance(owner, bytes) else owner) == run.task_id


def _script(client: redis.Redis) -> Any:
    """The outcome script (``scripts.registered``)."""
    return scripts.registered(client, _outcome_text())


@cache
def _outcome_text() -> str:
    return OUTCOME_LUA.read_text()


def record_body(record: dict[str, Any]) -> bytes:
    """A hook dead letter's body: the record the hook got, as JSON."""
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def dead_letter_extra(run: HookRun) -> str:
    """A hook dead letter's ``extra``: what a re-run needs besides the record."""
    return json.dumps({"sid": run.sid, "phase": run.phase, "info": run.info},
                      separators=(",", ":"), default=str)


def record_outcome(client: redis.Redis, run: HookRun, failure: Failure | None, *,
                   maxlen: int, ttl_s: int, now_ms: int = 0) -> str:
    """Record the run's outcome (with its dead letter if ``failure``); return
    ``done``, the dead letter's id, or ``stale`` (the claim is another task's, or
    has its outcome already: nothing written). ``ttl_s``: the outcome's TTL when
    the claim lapsed (as ``claim`` gives one). ``now_ms`` 0: Redis's clock."""
    args: list[Any] = [run.task_id, FAILED if failure else DONE, now_ms, maxlen, run.sid,
                       ttl_s]
    if failure is not None:
        args += [failure.reason, failure.detail, record_body(run.record), run.name,
                 failure.exception, dead_letter_extra(run)]
    reply = _script(client)(
        keys=[run.key, keys.DEADLETTERS, recordings_index.flag_index("deadletters")],
        args=args, client=client)
    return reply.decode() if isinstance(reply, bytes) else str(reply)
