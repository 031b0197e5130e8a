-- commit.lua: the handlers of `member` are published; its turn now waits for them
-- up to HANDLER_DEADLINE. Only if that turn is still current, still being taken,
-- and by the take that returned `token` (a later take of the same turn, after this
-- one's lease ran out, has its own token). Then, and only then, the handler task
-- messages are pushed onto their queues: the publish and the commit of one take
-- happen together or not at all, and at most one take of a turn publishes.
-- Prefixed with _lib.lua.
--
-- KEYS: 1-5 see _lib.lua   6.. the keys the messages go to (Celery queue lists)
-- ARGV: 1-4 see _lib.lua   5 member   6 deadline_ms (HANDLER_DEADLINE_S in ms)
--       7 token (of the take)   8.. one (command, value) pair per key 6..: the
--       final commands of kombu's publishes ("lpush" a message onto a queue,
--       "pexpire" a queue, "publish" to a fanout channel)
-- Reply: the turn's new lease deadline, or 0 if the turn is no longer this take's
--        (nothing is pushed then).
local member, deadline, token = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local PUSHES = {lpush = 'LPUSH', rpush = 'RPUSH', pexpire = 'PEXPIRE', publish = 'PUBLISH'}
for i = 6, #KEYS do
  local name = ARGV[8 + (i - 6) * 2]
  if not PUSHES[name] then
    return redis.error_reply('ERR commit: unsupported command ' .. tostring(name))
  end
end
local o = redis.call('HMGET', K_ORDER, 'cur', 'state', 'tk')
if o[1] ~= member or o[2] ~= 'taking' or tonumber(o[3]) ~= token then return 0 end
for i = 6, #KEYS do
  local j = 8 + (i - 6) * 2
  redis.call(PUSHES[ARGV[j]], KEYS[i], ARGV[j + 1])
end
redis.call('HSET', K_ORDER, 'state', 'dispatched', 'lease', NOW + deadline)
touch()
return NOW + deadline
