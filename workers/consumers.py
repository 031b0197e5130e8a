"""Stream consumers that are gone: removing them from a consumer group.

Every worker reads the inbox as its own consumer of the group (named
``<host>:<worker pid>``), so each worker start adds one to the group and nothing
takes it away: the list ``XINFO CONSUMERS`` shows (and every ``XPENDING`` summary
walks) grows with every restart. A dead worker's consumer keeps its pending
entries until another worker takes them over (``XAUTOCLAIM``); from then on it
holds nothing, and it is only a name.

``remove_idle_consumers`` deletes the consumers of a group that hold no pending
entry and have been idle for at least a threshold, never the caller's own. The
check and the ``XGROUP DELCONSUMER`` are one Lua script, so they are atomic:
``DELCONSUMER`` drops whatever the consumer holds, and a consumer that was given
an entry just after a separate check would lose it (the entry would stay
delivered to nobody and never be read again). Inside the script nothing can run
between the check and the delete.

A consumer removed while its process is merely stalled, not dead, loses
nothing: it held no entry, and its next ``XREADGROUP`` creates it again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

#: The script (``consumers.lua`` beside this module; its header says KEYS and ARGV).
REMOVE_IDLE_CONSUMERS_LUA = (Path(__file__).with_name("consumers.lua")).read_text()


def remove_idle_consumers(client: redis.Redis, group_key: str, group: str, idle_ms: int,
                          keep: str) -> list[str]:
    """Delete the consumers of ``group`` on the stream ``group_key`` that hold no
    pending entry and have been idle for at least ``idle_ms``, except ``keep``;
    return their names. Atomic (one script). A stream or group that does not exist
    has no consumers: nothing is deleted."""
    if idle_ms < 0:
        raise ValueError("idle_ms must be >= 0")
    script = client.register_script(REMOVE_IDLE_CONSUMERS_LUA)
    try:
        reply: Any = script(keys=[group_key], args=[group, int(idle_ms), keep])
    except redis.ResponseError as exc:
        text = str(exc)
        if "NOGROUP" in text or "no such key" in text:
            return []
        raise
    return [n.decode() if isinstance(n, bytes) else str(n) for n in reply or ()]
