-- settle_entry.lua: settle an inbox entry that has no turn: a body dead-lettered
-- (invalid, stale) or an event without ordering whose handler tasks are
-- published. Acknowledge and delete the entry; if, and only if, this call
-- acknowledged it (it was still pending: not settled before by this consumer or
-- by another that took it over), also write its dead letter and count it. A
-- consumer delayed past CLAIM_IDLE_MS whose entry was taken over and settled
-- therefore writes and counts nothing.
--
-- KEYS: 1 inbox stream   2 counters hash   3 dead letters stream
-- ARGV: 1 group   2 entry id   3 n, the number of counters
--       4 .. 3+2n (counter name, increment) pairs
--       then the dead letter's fields as (name, value) pairs (none: no dead letter),
--       the first pair being ("maxlen", DEADLETTER_MAXLEN)
-- Reply: 1 settled here, 0 settled before (nothing written).
local group, entry = ARGV[1], ARGV[2]
local ncounters = tonumber(ARGV[3])
local first = 4 + 2 * ncounters
local acked = redis.call('XACK', KEYS[1], group, entry)
redis.call('XDEL', KEYS[1], entry)
if acked ~= 1 then return 0 end
for i = 4, first - 1, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
if #ARGV > first then
  local fields = {'XADD', KEYS[3], 'MAXLEN', '~', ARGV[first + 1], '*'}
  for i = first + 2, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call(unpack(fields))
end
return 1
