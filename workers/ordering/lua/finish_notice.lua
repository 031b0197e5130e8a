-- finish_notice.lua: a handler task of an event without ordering is done: it
-- succeeded, or failed for good (then its dead letter is written here, in the
-- same step, so that it is written once). Only the task that started the handler
-- (start_notice.lua) may finish it; afterwards no copy of it starts again.
--
-- KEYS: 1 notice dedupe hash   2 dead letters stream   3 counters hash
-- ARGV: 1 handler name   2 task id   3 ttl_s   4 dead letters kept (approximate)
--       5.. the dead letter's fields as (name, value) pairs (none for a success)
-- Reply: 1 done, 0 not this task's (nothing written).
local field = 'h:' .. ARGV[1]
if redis.call('HGET', KEYS[1], field) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], field, 'done')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
if #ARGV > 4 then
  local fields = {'XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*'}
  for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call(unpack(fields))
  redis.call('HINCRBY', KEYS[3], 'deadletters_handler', 1)
end
return 1
