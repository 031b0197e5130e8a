-- finish.lua: handlers of `member` are done (succeeded, or dead-lettered). When
-- the last one of the turn is done, the turn ends and the next event is taken.
-- Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua
-- ARGV: 1-4 see _lib.lua   5 member   6.. handler names
-- Reply: {"stale"} if the turn is not this member's or these handlers had already
--        finished; {"pending"} if other handlers of the turn still run;
--        otherwise {"next", <take reply...>}.
local member = ARGV[5]
if redis.call('HGET', K_ORDER, 'cur') ~= member then return {'stale'} end
local removed = 0
for i = 6, #ARGV do
  removed = removed + redis.call('SREM', K_TURN, ARGV[i])
end
if removed == 0 then return {'stale'} end
if redis.call('SCARD', K_TURN) > 0 then
  touch()
  return {'pending'}
end
end_turn(member)
local r = take()
touch()
table.insert(r, 1, 'next')
return r
