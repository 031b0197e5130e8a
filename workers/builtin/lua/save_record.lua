-- save_record.lua: write a recording's record only if it is still the one the
-- caller read (compare-and-set), and set its lifecycle timer, the dashboard's
-- index of the record and, for a fold, the event's member of the dashboard's
-- timeline, in the same step.
-- Used by every writer of the record (agora_callbacks/workers/builtin/store.py):
-- the fold in the turn path, the lifecycle sweep, update_record (reconciliation).
--
-- KEYS: 1 record (string, JSON)   2 lifecycle timers (zset sid -> due ms)
--       3 the recording's order hash (only read when ARGV[6] is not empty)
--       4 the recording's timeline (zset, agora_callbacks/recording_timeline.py)
--       5.. the dashboard index's keys (agora_callbacks/recordings_index.py)
-- ARGV: 1 sha1 of the record read ("" when there was none)   2 new record
--       3 ttl seconds   4 due ms of the lifecycle timer (0: remove it; -1: leave it)
--       5 sid   6 member whose turn it must still be ("" : no such check)
--       7 the event's timeline member (JSON, deterministic: a fold written again
--         adds nothing; "": none)   8 its score (the sequence)   9 members kept
--       10.. the dashboard index's arguments (``index_update``, prepended to this
--       script by store.script_text), on KEYS 5..
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
if ARGV[7] ~= '' then
  redis.call('ZADD', KEYS[4], ARGV[8], ARGV[7])
  local keep = tonumber(ARGV[9])
  if redis.call('ZCARD', KEYS[4]) > keep then
    redis.call('ZREMRANGEBYRANK', KEYS[4], 0, -keep - 1)
  end
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
if #KEYS > 4 then index_update({unpack(KEYS, 5)}, {unpack(ARGV, 10)}) end
return 'ok'
