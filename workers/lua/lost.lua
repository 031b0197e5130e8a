-- lost.lua: the handlers of `member` never reported back (take returned a "lost"
-- turn with `token`): dead-letter each handler of the turn still pending, count
-- them, end the turn and take the recording's next event, all in one step, and
-- only if the turn is still this member's, still lost, and by the take that
-- returned `token`. A worker delayed past DISPATCH_LEASE_MS, whose lost turn the
-- timer sweep (or another worker) took again under a new token and settled or is
-- settling, then writes nothing: a lost handler is dead-lettered once. A handler
-- that reported meanwhile (finish.lua removed it from the turn) is not
-- dead-lettered. Prefixed with _lib.lua.
--
-- KEYS: 1-5 see _lib.lua   6 dead-letter stream   7 counters hash
-- ARGV: 1-4 see _lib.lua   5 member   6 token (of the take)   7 dead letters kept
--       (DEADLETTER_MAXLEN, approximate trim)
--       8.. the dead letter's fields, (name, value) pairs, without `handler`
--       (added for each handler)
-- Reply: {"stale"} if the turn is no longer this take's (nothing done); otherwise
--        {"next", n, handler 1..n (dead-lettered), <take reply...>}.
local member, token, maxlen = ARGV[5], tonumber(ARGV[6]), ARGV[7]
local o = redis.call('HMGET', K_ORDER, 'cur', 'state', 'tk')
if o[1] ~= member or o[2] ~= 'lost' or tonumber(o[3]) ~= token then return {'stale'} end
local pending = redis.call('SMEMBERS', K_TURN)
table.sort(pending)
local fields = {'XADD', KEYS[6], 'MAXLEN', '~', maxlen, '*'}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
fields[#fields + 1] = 'handler'
for i = 1, #pending do
  fields[#fields + 1] = pending[i]
  redis.call(unpack(fields))
  fields[#fields] = nil
end
if #pending > 0 then
  redis.call('HINCRBY', KEYS[7], 'deadletters_handler', #pending)
end
end_turn(member)
local r = take()
touch()
local out = {'next', #pending}
for i = 1, #pending do out[#out + 1] = pending[i] end
for i = 1, #r do out[#out + 1] = r[i] end
return out
