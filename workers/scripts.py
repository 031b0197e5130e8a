"""The Lua scripts of the workers, loaded from ``workers/lua/*.lua``.

The per-recording scripts (admit, take, commit, start, finish) share the helpers
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
RECORDING_SCRIPTS = ("admit", "take", "commit", "start", "finish")
STANDALONE_SCRIPTS = ("claim_notice", "timer_set", "timer_commit")

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


def load_all(client: redis.Redis) -> None:
    """Load every script into Redis's script cache."""
    pipe = client.pipeline(transaction=False)
    for name in RECORDING_SCRIPTS + STANDALONE_SCRIPTS:
        pipe.script_load(source(name))
    pipe.execute()


def evalsha(pipe: Pipe, name: str, keys: Sequence[str], args: Sequence[Any]) -> object:
    """Queue (on a pipeline) or run (on a client) script ``name``."""
    return pipe.evalsha(sha(name), len(keys), *keys, *args)


def run(client: redis.Redis, calls: Sequence[Call], atomic: bool = False) -> list[Any]:
    """Run ``calls`` in one pipeline (``atomic``: in one MULTI/EXEC transaction);
    return their results in order.

    Errors are returned in place (not raised), except ``NOSCRIPT``: the scripts are
    then loaded and the failed calls run again. Connection errors are raised.
    """
    pipe = client.pipeline(transaction=atomic)
    for call in calls:
        call(pipe)
    results: list[Any] = pipe.execute(raise_on_error=False)
    missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
    if missing:
        load_all(client)
        retry = client.pipeline(transaction=False)
        for i in missing:
            calls[i](retry)
        for i, value in zip(missing, retry.execute(raise_on_error=False), strict=True):
            results[i] = value
    return results
