-- admit.lua: take in one stored body of a recording: claim its event (dedupe),
-- buffer it, acknowledge its inbox entry, then take the recording's next event if
-- its turn has come; all in one atomic step, so an entry is acknowledged if, and
-- only if, its event is claimed. Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-13)
-- ARGV: 1-10 see _lib.lua
--       11 dedupe field   12 member   13 sequence   14 inbox entry id   15 record
-- Reply: {status, <take reply...>}
--   status "dup":      another entry already claimed this event (counted once, by
--                      the call that acknowledges the entry); take runs all the same
--   status "admitted": claimed and buffered now
--   status "again":    this same inbox entry claimed it before (a redelivery after
--                      a crash, or a consumer that lost the entry to another):
--                      nothing buffered twice
local field, member, seq, entry, record = ARGV[11], ARGV[12], tonumber(ARGV[13]), ARGV[14],
  ARGV[15]

local owner = redis.call('HGET', K_DEDUPE, field)
local status = 'again'
if owner and owner ~= entry then
  status = 'dup'
elseif not owner then
  status = 'admitted'
  redis.call('HSET', K_DEDUPE, field, entry)
  redis.call('HSET', K_EVENTS, member, record)
  redis.call('ZADD', K_BUFFER, ARGV[13], member)
  redis.call('ZADD', K_ARRIVALS, int(NOW), member)
end
if settle(entry) then
  if status == 'dup' then count('duplicates', 1) end
  if status == 'admitted' then count('admitted', 1) end
end
local r = take()
touch()
table.insert(r, 1, status)
return r
