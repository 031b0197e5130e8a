-- commit.lua: the handlers of `member` are published; its turn now waits for them
-- up to HANDLER_DEADLINE. Only if that turn is still current and still being taken.
-- Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua
-- ARGV: 1-4 see _lib.lua   5 member   6 deadline_ms (HANDLER_DEADLINE_S in ms)
-- Reply: the turn's new lease deadline, or 0 if the turn is no longer this one.
local member, deadline = ARGV[5], tonumber(ARGV[6])
local o = redis.call('HMGET', K_ORDER, 'cur', 'state')
if o[1] ~= member or o[2] ~= 'taking' then return 0 end
redis.call('HSET', K_ORDER, 'state', 'dispatched', 'lease', NOW + deadline)
touch()
return NOW + deadline
