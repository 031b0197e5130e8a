-- consumers.lua: delete the consumers of a stream's group that hold no pending entry
-- and have been idle for a while (see workers/consumers.py).
--
-- KEYS[1] the stream; ARGV[1] the group, ARGV[2] the idle threshold in ms (a
-- consumer idle for at least that long, with no pending entry, is deleted), ARGV[3] a
-- consumer never deleted (the caller's own). Returns the deleted names.
-- ``idle`` is the time since the consumer's last attempted interaction (a read,
-- even an empty one, a claim); ``pending`` the entries delivered to it and not
-- acknowledged.

local removed = {}
local threshold = tonumber(ARGV[2])
local consumers = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, consumer in ipairs(consumers) do
    local fields = {}
    for i = 1, #consumer, 2 do
        fields[consumer[i]] = consumer[i + 1]
    end
    local name = fields['name']
    if name ~= ARGV[3] and tonumber(fields['pending']) == 0
            and tonumber(fields['idle']) >= threshold then
        redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], name)
        removed[#removed + 1] = name
    end
end
return removed
