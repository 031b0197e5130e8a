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

from typing import Any

import redis

#: KEYS[1] the stream; ARGV[1] the group, ARGV[2] the idle threshold in ms (a
#: consumer idle for at least that long, with no pending entry, is deleted), ARGV[3] a
#: consumer never deleted (the caller's own). Returns the deleted names.
#: ``idle`` is the time since the consumer's last attempted interaction (a read,
#: even an empty one, a claim); ``pending`` the entries delivered to it and not
#: acknowledged.
REMOVE_IDLE_CONSUMERS_LUA = """
local removed = {}
local threshold = tonumber(ARGV[2])
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, consumer in ipairs(consumers) do
    local fields = {}
    for i = 1, #consumer, 2 do
        fields[consumer[i]] = consumer[i + 1]
    end
    local name = fields['name']
    if name ~= ARGV[3] and tonumber(fields['pending']) == 0
            and tonumber(fields['idle']) >= threshold then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
        removed[#removed + 1] = name
    end
end
return removed
"""


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
