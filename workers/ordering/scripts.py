"""The Lua scripts of the workers, loaded from ``workers/ordering/lua/*.lua``.

The per-recording scripts (admit, take, start, finish) share the helpers
of ``_lib.lua``, which is prepended to each of them. Scripts are called with
``EVALSHA`` inside plain pipelines (redis-py's ``Script`` objects would add a
``SCRIPT EXISTS`` round trip to every pipeline); a ``NOSCRIPT`` reply (Redis
restarted or flushed its script cache) is repaired by ``run``: it loads the
scripts and runs again only the calls that failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).with_name("lua")
RECORDING_SCRIPTS = ("admit", "take", "start", "finish")
STANDALONE_SCRIPTS = ("settle_entry",)

Pipe = Any  # a redis-py Pipeline (or client) that ``evalsha`` can be queued on
Call = Callable[[Pipe], object]


@cache
def source(name: str) -> str:
    """The full text of script ``name`` as sent to Redis."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    if name in RECORDING_SCRIPTS:
        text = (LUA_DIR / "_lib.lua").read_text() + "\n" + text
    return text


@cache
def sha(name: str) -> str:
    return hashlib.sha1(source(name).encode()).hexdigest()


_REGISTERED: dict[str, Any] = {}


def registered(client: redis.Redis, text: str) -> Any:
    """redis-py's ``Script`` for ``text`` (EVALSHA, loaded again on NOSCRIPT), made
    once per process: for a script called on its own, outside these pipelines (the
    record's compare-and-set, a hook's outcome). Call it with ``client=``."""
    script = _REGISTERED.get(text)
    if script is None:
        script = _REGISTERED[text] = client.register_script(text)
    return script


def load_all(client: redis.Redis) -> None:
    """Load every script into Redis's script cache."""
    pipe = client.pipeline(transaction=False)
    for name in RECORDING_SCRIPTS + STANDALONE_SCRIPTS:
        pipe.script_load(source(name))
    pipe.execute()


def evalsha(pipe: Pipe, name: str, keys: Sequence[str], args: Sequence[Any]) -> object:
    """Queue (on a pipeline) or run (on a client) script ``name``."""
    return pipe.evalsha(sha(name), len(keys), *keys, *args)


def run(client: redis.Redis, calls: Sequence[Call]) -> list[Any]:
    """Run ``calls`` in one pipeline (not a transaction: each script is atomic on its
    own, and every decision with what depends on it is one script); return one
    result per call, in order: the reply of the command it queued (None if it
    queued none, the list of replies if it queued several).

    Errors are returned in place (not raised), except ``NOSCRIPT``: the scripts are
    then loaded and the calls that failed run again (whole: a script that failed
    with ``NOSCRIPT`` did nothing). Connection errors are raised.
    """
    pipe = client.pipeline(transaction=False)
    spans = _queue(pipe, calls)
    replies: list[Any] = pipe.execute(raise_on_error=False)
    results = [_result(replies, span) for span in spans]
    missing = [i for i, span in enumerate(spans)
               if any(isinstance(r, NoScriptError) for r in replies[span[0]:span[1]])]
    if missing:
        load_all(client)
        retry = client.pipeline(transaction=False)
        again = _queue(retry, [calls[i] for i in missing])
        retried: list[Any] = retry.execute(raise_on_error=False)
        for i, span in zip(missing, again, strict=True):
            results[i] = _result(retried, span)
    return results


def _queue(pipe: Any, calls: Sequence[Call]) -> list[tuple[int, int]]:
    """Queue ``calls`` on ``pipe``; return the span of its commands each one queued."""
    spans = []
    for call in calls:
        start = len(pipe.command_stack)
        call(pipe)
        spans.append((start, len(pipe.command_stack)))
    return spans


def _result(replies: list[Any], span: tuple[int, int]) -> Any:
    first, end = span
    if end - first == 1:
        return replies[first]
    return replies[first:end] if end > first else None
