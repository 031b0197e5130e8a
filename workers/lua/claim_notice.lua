-- claim_notice.lua: dedupe an event dispatched without ordering (no sid/sequence,
-- or DEDUPE_KEY=notice without them) by its noticeId.
--
-- KEYS: 1 notice dedupe key (string)
-- ARGV: 1 inbox entry id   2 ttl_s
-- Reply: "new" (claimed now), "again" (claimed before by this same entry: a
--        redelivery after a crash, dispatch again), "dup" (another entry has it).
local owner = redis.call('GET', KEYS[1])
if not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return 'new'
end
if owner == ARGV[1] then return 'again' end
return 'dup'
