-- settle_entry.lua: settle the inbox entry of an unordered event (one with no
-- sid/sequence, hence no turn): push its handler tasks' messages, count it,
-- acknowledge and delete the entry, all only if this consumer still owns the
-- entry (it is pending for this consumer in the group). A consumer delayed past
-- CLAIM_IDLE_MS, whose entry another worker took over (XAUTOCLAIM) and settled
-- or is about to settle, then does nothing at all: the event's handler tasks are
-- pushed by one settle only, and the entry is left to its owner. Ownership moves
-- only by XAUTOCLAIM and ends with XACK, so at most one settle of an entry runs.
--
-- KEYS: 1 inbox stream   2 counters hash   3.. the keys the messages go to
--       (Celery queue lists)
-- ARGV: 1 group   2 consumer   3 entry id   4 n, the number of counters
--       5 .. 4+2n (counter name, increment) pairs
--       then one (command, value) pair per key 3..: the final commands of
--       kombu's publishes, as for commit.lua ("lpush", "rpush", "pexpire", "publish")
-- Reply: 1 settled, 0 the entry is not (or no longer) this consumer's: nothing done.
local group, consumer, entry = ARGV[1], ARGV[2], ARGV[3]
local ncounters = tonumber(ARGV[4])
local first = 5 + 2 * ncounters
local PUSHES = {lpush = 'LPUSH', rpush = 'RPUSH', pexpire = 'PEXPIRE', publish = 'PUBLISH'}
for i = 3, #KEYS do
  local name = ARGV[first + (i - 3) * 2]
  if not PUSHES[name] then
    return redis.error_reply('ERR settle_entry: unsupported command ' .. tostring(name))
  end
end
local mine = redis.call('XPENDING', KEYS[1], group, entry, entry, 1, consumer)
if #mine == 0 then return 0 end
for i = 3, #KEYS do
  local j = first + (i - 3) * 2
  redis.call(PUSHES[ARGV[j]], KEYS[i], ARGV[j + 1])
end
for i = 5, first - 1, 2 do
  redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('XACK', KEYS[1], group, entry)
redis.call('XDEL', KEYS[1], entry)
return 1
