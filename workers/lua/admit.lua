-- admit.lua: claim an event of one recording (dedupe), buffer it, then take the
-- recording's next event if its turn has come. Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (dedupe, order, buffer, events, turn of one recording)
-- ARGV: 1-4 see _lib.lua
--       5 dedupe field   6 member   7 sequence   8 inbox entry id   9 record
-- Reply: {status, <take reply...>}
--   status "dup":      another entry already claimed this event; nothing else done
--                      (the take reply is absent)
--   status "admitted": claimed and buffered now
--   status "again":    this same inbox entry claimed it before (a redelivery after
--                      a crash): nothing re-buffered, take runs again
local field, member, seq, entry, record = ARGV[5], ARGV[6], tonumber(ARGV[7]), ARGV[8], ARGV[9]

local owner = redis.call('HGET', K_DEDUPE, field)
if owner and owner ~= entry then
  touch()
  return {'dup'}
end
local status = 'again'
if not owner then
  status = 'admitted'
  redis.call('HSET', K_DEDUPE, field, entry)
  redis.call('HSET', K_EVENTS, member, record)
  redis.call('ZADD', K_BUFFER, seq, member)
end
local r = take()
touch()
table.insert(r, 1, status)
return r
