-- start.lua: may this handler task run for `member`? The fence of "once": a
-- handler of the current turn starts once, claimed by the first task copy that
-- starts (a copy published again after the publish lease, or by a publisher that
-- was late, is skipped); the same task (a Celery retry, or a redelivery after its
-- process died mid-run) may run again. Starting pushes the handler's deadline to
-- now + HANDLER_DEADLINE. Prefixed with _lib.lua.
--
-- KEYS: see _lib.lua (1-13)
-- ARGV: 1-10 see _lib.lua   11 member   12 handler name   13 task id
-- Reply: 1 run it, 0 skip it (the turn is over, the handler finished, or another
--        copy started it; counted in skipped_copies).
local member, handler, task = ARGV[11], ARGV[12], ARGV[13]
if redis.call('HGET', K_ORDER, 'cur') ~= member then
  count('skipped_copies', 1)
  return 0
end
local slot = redis.call('HGET', K_TURN, handler)
if not slot then
  count('skipped_copies', 1)
  return 0
end
local owner = parse_slot(slot)
if owner ~= '-' and owner ~= task then
  count('skipped_copies', 1)
  return 0
end
redis.call('HSET', K_TURN, handler, task .. '|' .. int(NOW + DEADLINE))
arm(turn_due())
touch()
return 1
