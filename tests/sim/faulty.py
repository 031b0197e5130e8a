"""The faulty Redis client of the simulated workers.

A subclass of ``redis.Redis`` whose ``pipeline()`` returns a subclass of redis-py's
``Pipeline``; both override only public methods (``execute_command``, ``execute``).
Before each round trip the calling operation reaches a checkpoint (it may be
stalled or killed there) and learns the fault the scheduler chose for it:

- ``before``: the command is not sent; a ``ConnectionError`` is raised (the
  server was unreachable);
- ``after``: the command is applied, then a ``TimeoutError`` is raised (the
  reply was lost);
- ``partial`` (pipelines only): the first commands of the pipeline are applied,
  the connection drops before the rest (``ConnectionError``).

A per-recording script runs with the virtual time of its execution as ``now_ms``
(production passes 0: the script reads Redis's clock as it runs).

Every script call that Redis applied is reported to ``observe`` with its reply,
whatever the caller then sees: the model's ground truth of what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from agora_callbacks.workers.builtin import store
from agora_callbacks.workers.ordering import scripts

Observer = Callable[[str, list[Any], Any], None]


def script_name(sha: str) -> str | None:
    """The name of the script with this SHA (looked up each time: a test may swap a
    script for a mutant, ``sim.mutants``)."""
    for name in scripts.RECORDING_SCRIPTS + scripts.STANDALONE_SCRIPTS:
        if scripts.sha(name) == sha:
            return name
    if sha == store.script_sha():
        return "save_record"
    return None


def raise_fault(fault: str, what: str) -> None:
    if fault == "after":
        raise redis.TimeoutError(f"sim: reply to {what} lost (the command applied)")
    raise redis.ConnectionError(f"sim: {what} not sent ({fault})")


def _script_of(args: tuple[Any, ...]) -> str | None:
    if args and str(args[0]).upper() == "EVALSHA":
        sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
        return script_name(sha)
    return None


class FaultyPipeline(Pipeline):
    sim_hook: Any = None

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        hook = self.sim_hook
        fault = hook.round_trip("pipeline:" + ",".join(_label(c[0]) for c in self.command_stack),
                                pipeline=len(self.command_stack))
        if fault == "before":
            self.reset()
            raise_fault(fault, "pipeline")
        stack = [(_now_at_execution(args, hook.now()), opts) for args, opts in self.command_stack]
        self.command_stack = stack
        if fault == "partial":
            keep = hook.partial_cut(len(stack))
            self.command_stack = stack[:keep]
            stack = stack[:keep]
        replies = super().execute(raise_on_error=False) if stack else []
        for (args, _opts), reply in zip(stack, replies, strict=False):
            name = _script_of(args)
            if name is not None and not isinstance(reply, Exception):
                hook.observe(name, list(args), reply)
        if fault in ("after", "partial"):
            raise_fault(fault, "pipeline")
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies


def _now_at_execution(args: tuple[Any, ...], now: int) -> tuple[Any, ...]:
    """A per-recording script gets the time it runs at, not the time it was queued
    at: in production ``script_ms()`` is 0 and the script reads Redis's clock when
    it runs, whatever happened (a stall) between queueing and sending."""
    if _script_of(args) in scripts.RECORDING_SCRIPTS:
        nkeys = int(args[2])
        return (*args[:3 + nkeys], now, *args[4 + nkeys:])
    return args


def _label(args: tuple[Any, ...]) -> str:
    name = _script_of(args)
    return name if name is not None else str(args[0])


class FaultyRedis(redis.Redis):
    sim_hook: Any = None

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Pipeline:
        pipe = FaultyPipeline(self.connection_pool, self.response_callbacks, transaction,
                              shard_hint)
        pipe.sim_hook = self.sim_hook
        return pipe

    def execute_command(self, *args: Any, **options: Any) -> Any:
        hook = self.sim_hook
        fault = hook.round_trip(_label(args))
        if fault == "before" or fault == "partial":
            raise_fault("before", str(args[0]))
        args = _now_at_execution(args, hook.now())
        reply = super().execute_command(*args, **options)
        name = _script_of(args)
        if name is not None:
            hook.observe(name, list(args), reply)
        if fault == "after":
            raise_fault(fault, str(args[0]))
        return reply


def faulty_client(url: str, hook: Any) -> FaultyRedis:
    """A client of the simulated worker: its own connection pool, faults from ``hook``."""
    client = FaultyRedis.from_url(url, socket_timeout=10, socket_connect_timeout=10)
    assert isinstance(client, FaultyRedis)
    client.sim_hook = hook
    return client
