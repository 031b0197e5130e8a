-- timer_set.lua: after the sweep ran take for a recording, move its timer from
-- the score it fired at to the recording's next due time (0: no timer), unless
-- someone moved it meanwhile (they only ever move it earlier).
--
-- KEYS: 1 timers zset
-- ARGV: 1 sid   2 score the sweep read   3 new due ms (0: remove)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
return 1
