-- start.lua: may this handler run for `member`? Yes while the handler is still
-- pending in the recording's current turn; then the turn's deadline is pushed
-- back, so a handler retrying with backoff keeps its turn. No once it finished
-- (a redelivered copy after a crash between finish and ack must not run again).
-- Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua
-- ARGV: 1-4 see _lib.lua   5 member   6 handler name   7 deadline_ms
-- Reply: 1 run it, 0 skip it.
local member, handler, deadline = ARGV[5], ARGV[6], tonumber(ARGV[7])
local o = redis.call('HMGET', K_ORDER, 'cur', 'state', 'lease')
if o[1] ~= member or redis.call('SISMEMBER', K_TURN, handler) == 0 then return 0 end
if o[2] == 'dispatched' and (tonumber(o[3]) or 0) < NOW + deadline then
  redis.call('HSET', K_ORDER, 'lease', NOW + deadline)
end
touch()
return 1
