-- At most ARGV[1] calls in any ARGV[2] ms, for everyone sharing KEYS[1].
-- KEYS[1]: sorted set of the calls let through (member: a caller's unique token,
--          score: Redis's time in ms). ARGV[3]: this call's token.
-- Returns 0 when the call may go now (it is recorded), else how many ms to wait
-- before asking again (nothing recorded). Redis's own clock: every process agrees.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = tonumber(oldest[2]) + window - now
if wait < 1 then
  wait = 1
end
return wait
