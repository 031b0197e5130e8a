-- start_notice.lua: the fence of "once" for an event without ordering: a handler
-- starts once per noticeId, claimed by the first task copy that starts (a copy
-- published again by an intake that lost its inbox entry to another is skipped);
-- the same task (a Celery retry, a redelivery after its process died) may run again.
--
-- KEYS: 1 notice dedupe hash   2 counters hash
-- ARGV: 1 handler name   2 task id   3 ttl_s
-- Reply: 1 run it, 0 skip it (counted in skipped_copies).
local field = 'h:' .. ARGV[1]
local owner = redis.call('HGET', KEYS[1], field)
if owner and owner ~= ARGV[2] then
  redis.call('HINCRBY', KEYS[2], 'skipped_copies', 1)
  return 0
end
if not owner then
  redis.call('HSET', KEYS[1], field, ARGV[2])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
end
return 1
