-- finish.lua: a handler task of `member` is done: it succeeded, or failed for good
-- (then its dead letter is written here, in the same step, so that it is written
-- once), and the run is added to the recording's timeline (the dashboard's; a
-- dead-lettered run sets its "dead letters" flag) in the same step, so that it is
-- written once too. Only the task that started the handler (start.lua) may finish
-- it. When the last handler of the turn is done, the turn ends and the next event
-- is taken. Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-13)
-- ARGV: 1-10 see _lib.lua   11 member   12 handler name   13 task id
--       14 dead letter reason ("" for a success)   15 detail   16 exception
--       17 "1": add the run to the timeline ("0": not a handler run, e.g. the
--          fold's own slot)   18 the run's duration in ms ("": unknown)
-- Reply: {"stale"} if the turn is not this member's or the handler is no longer
--        this task's (finished, or dead-lettered as lost); {"pending"} if other
--        handlers of the turn have not finished; otherwise {"next", <take reply...>}.
local member, handler, task = ARGV[11], ARGV[12], ARGV[13]
local reason, detail, exc = ARGV[14], ARGV[15], ARGV[16]
if redis.call('HGET', K_ORDER, 'cur') ~= member then return {'stale'} end
local slot = redis.call('HGET', K_TURN, handler)
if not slot or parse_slot(slot) ~= task then return {'stale'} end
if reason ~= '' then
  dead_letter(redis.call('HGET', K_EVENTS, member), member, handler, reason, detail, exc)
end
if ARGV[17] == '1' then
  timeline_run(member, handler, reason ~= '' and reason or 'done', ARGV[18], '', exc)
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
