-- finish.lua: a handler task of `member` is done: it succeeded, or failed for good
-- (then its dead letter is written here, in the same step, so that it is written
-- once). Only the task that started the handler (start.lua) may finish it. When
-- the last handler of the turn is done, the turn ends and the next event is taken.
-- Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-10)
-- ARGV: 1-8 see _lib.lua   9 member   10 handler name   11 task id
--       12 dead letter reason ("" for a success)   13 detail   14 exception
-- Reply: {"stale"} if the turn is not this member's or the handler is no longer
--        this task's (finished, or dead-lettered as lost); {"pending"} if other
--        handlers of the turn have not finished; otherwise {"next", <take reply...>}.
local member, handler, task = ARGV[9], ARGV[10], ARGV[11]
local reason, detail, exc = ARGV[12], ARGV[13], ARGV[14]
if redis.call('HGET', K_ORDER, 'cur') ~= member then return {'stale'} end
local slot = redis.call('HGET', K_TURN, handler)
if not slot or parse_slot(slot) ~= task then return {'stale'} end
if reason ~= '' then
  dead_letter(redis.call('HGET', K_EVENTS, member), member, handler, reason, detail, exc)
end
redis.call('HDEL', K_TURN, handler)
if redis.call('HLEN', K_TURN) > 0 then
  arm(turn_due())
  touch()
  return {'pending'}
end
end_turn(member)
local r = take()
touch()
table.insert(r, 1, 'next')
return r
