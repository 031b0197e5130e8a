-- timer_commit.lua: the recording's timer after `commit` of a turn it took, in the
-- same transaction (right after it). Taken under a lease (`take`), the turn's due
-- time was that lease; committed, it is the handler deadline. While the lease had
-- not run out, nobody else could take the turn, so the commit succeeded and
-- nothing else about the recording is due before the deadline: the timer moves
-- there (later), and the sweep does not wake for a turn that is simply running.
-- Otherwise (the lease ran out: the commit may have failed) the timer is only
-- kept no later than the lease, as before.
--
-- KEYS: 1 timers zset
-- ARGV: 1 sid   2 the taken turn's lease deadline (ms)   3 deadline_ms
--       4 now_ms (0: the server's clock, as in the per-recording scripts)
local now = tonumber(ARGV[4])
if not now or now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local lease = tonumber(ARGV[2])
if now < lease then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  return 1
end
redis.call('ZADD', KEYS[1], 'LT', lease, ARGV[1])
return 0
