-- claim_notice.lua: dedupe an event dispatched without ordering (no sid/sequence,
-- or DEDUPE_KEY=notice without them) by its noticeId. A copy from another entry
-- is a duplicate: its entry is acknowledged here (counted once, by the call that
-- acknowledges it).
--
-- KEYS: 1 notice dedupe hash   2 inbox stream   3 counters hash
-- ARGV: 1 inbox entry id   2 ttl_s   3 inbox consumer group
-- Reply: "new" (claimed now), "again" (claimed before by this same entry: a
--        redelivery after a crash, dispatch again), "dup" (another entry has it).
local owner = redis.call('HGET', KEYS[1], 'e')
if not owner then
  redis.call('HSET', KEYS[1], 'e', ARGV[1])
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
  return 'new'
end
if owner == ARGV[1] then return 'again' end
if redis.call('XACK', KEYS[2], ARGV[3], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'duplicates', 1)
end
redis.call('XDEL', KEYS[2], ARGV[1])
return 'dup'
