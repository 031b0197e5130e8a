-- save_record.lua: write a recording's record only if it is still the one the
-- caller read (compare-and-set), and set its lifecycle timer in the same step.
-- Used by every writer of the record (agora_callbacks/workers/builtin/store.py):
-- the fold in the turn path, the lifecycle sweep, update_record (reconciliation).
--
-- KEYS: 1 record (string, JSON)   2 lifecycle timers (zset sid -> due ms)
--       3 the recording's order hash (only read when ARGV[6] is not empty)
--       4.. the dashboard index's keys (agora_callbacks/recordings_index.py)
-- ARGV: 1 sha1 of the record read ("" when there was none)   2 new record
--       3 ttl seconds   4 due ms of the lifecycle timer (0: remove it; -1: leave it)
--       5 sid   6 member whose turn it must still be ("" : no such check)
--       7.. the dashboard index's arguments (``index_update``, prepended to this
--       script by store.script_text), on KEYS 4..
-- Reply: "ok", "conflict" (the record changed since it was read: read it again)
--        or "stale" (the turn of ARGV[6] is over: another process folded it).
local current = redis.call('GET', KEYS[1])
local seen = ''
if current then seen = redis.sha1hex(current) end
if seen ~= ARGV[1] then return 'conflict' end
if ARGV[6] ~= '' and redis.call('HGET', KEYS[3], 'cur') ~= ARGV[6] then return 'stale' end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
local due = tonumber(ARGV[4])
if due > 0 then
  redis.call('ZADD', KEYS[2], string.format('%.0f', due), ARGV[5])
elseif due == 0 then
  redis.call('ZREM', KEYS[2], ARGV[5])
end
if #KEYS > 3 then index_update({unpack(KEYS, 4)}, {unpack(ARGV, 7)}) end
return 'ok'
