-- hook_outcome.lua: the outcome of one run of a lifecycle hook (workers/hooks.py,
-- workers/hook_runs.py), recorded once. Only the task that claimed the run may
-- record it: its claim key then says "done" or "failed" (its TTL kept), so no copy
-- of the task, with this task id or another, runs the hook again. A claim that lapsed
-- (the hook, or its retries, outlasted the claim's TTL) and that nobody took since is
-- still this run's: its outcome is recorded, with the TTL of a new claim. A failure's dead
-- letter (kind "hook", in the fields agora_callbacks/deadletters.py reads) is
-- written in the same step, and the dashboard's "dead letters" flag of the
-- recording is set (as finish.lua does for a handler).
--
-- KEYS: 1 the claim (string: the task id that claimed the run)
--       2 dead letters (stream)   3 the dashboard's "dead letters" flag (zset sid -> ms)
-- ARGV: 1 task id   2 outcome: "done" or "failed"   3 now ms (0: Redis's clock)
--       4 dead letters kept (approximate)   5 sid   6 the claim's TTL (s), for a lapsed one
--       for "failed": 7 reason   8 detail   9 body (the record, JSON)   10 hook name
--                     11 exception   12 extra (JSON: sid, phase, info)
-- Reply: "stale" (the claim is another task's, or its outcome is recorded already),
--        "done", or the id of the dead letter written.
local owner = redis.call('GET', KEYS[1])
local outcome = ARGV[2]
if owner == false then
  redis.call('SET', KEYS[1], outcome, 'EX', ARGV[6])
elseif owner == ARGV[1] then
  redis.call('SET', KEYS[1], outcome, 'KEEPTTL')
else
  return 'stale'
end
if outcome ~= 'failed' then return outcome end
local now = tonumber(ARGV[3])
if not now or now <= 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local at = string.format('%.0f', now)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*',
                      'kind', 'hook', 'reason', ARGV[7], 'detail', ARGV[8], 'body', ARGV[9],
                      'meta', '{}', 'at', at, 'key', '', 'handler', ARGV[10], 'exc', ARGV[11],
                      'extra', ARGV[12])
redis.call('ZADD', KEYS[3], at, ARGV[5])
return id
