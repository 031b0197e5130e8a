-- _lib.lua: shared prologue of the per-recording scripts (admit, take, commit, lost,
-- start, finish). workers/scripts.py prepends it to each of them, so every script
-- below sees these locals. Nothing here runs on its own.
--
-- KEYS (all of one recording, sharing the hash tag {sid}):
--   1 dedupe  hash  dedupe field ("<eventType>:<sequence>" or "n:<noticeId>") -> inbox entry id
--   2 order   hash  next, since, cur, state, lease, clate, cgap (the ordering cursor),
--                   tk (take token: counts the takes that returned an event or a
--                   lost turn)
--   3 buffer  zset  member -> sequence: admitted events not yet taken
--   4 events  hash  member -> record ("<handler,names>\n<header json>\n<raw body>")
--   5 turn    set   handlers of the current event that have not finished yet
-- ARGV common to every script:
--   1 now_ms  (0: use the server's clock)   2 ttl_s   3 hold_ms   4 lease_ms
--
-- A member is "<sequence>|<dedupe field>"; it names one admitted event.
-- order.state: "taking" (handlers being published; lease = DISPATCH_LEASE),
-- "dispatched" (published; lease = HANDLER_DEADLINE, pushed back at each
-- handler start), "lost" (lease ran out while dispatched; its handlers are being
-- dead-lettered by the worker that found it, with lost.lua; lease = DISPATCH_LEASE).
-- order.tk: every take that returns an event or a lost turn increments it and
-- returns it; commit.lua and lost.lua accept only the token of the latest take, so
-- that of two takes of the same turn (the second after the first one's lease ran
-- out) at most one publishes its handler tasks, or dead-letters them as lost. It
-- is kept across turns (never reset but by expiry).

local K_DEDUPE, K_ORDER, K_BUFFER, K_EVENTS, K_TURN = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local function clock(arg)
  local n = tonumber(arg)
  if n and n > 0 then return n end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local NOW = clock(ARGV[1])
local TTL = tonumber(ARGV[2])
local HOLD = tonumber(ARGV[3])
local LEASE = tonumber(ARGV[4])

-- Every key of the recording lives DEDUPE_TTL_S after its last touch.
local function touch()
  for i = 1, 5 do redis.call('EXPIRE', KEYS[i], TTL) end
end

local function handlers_of(record)
  local out = {}
  local nl = string.find(record, '\n', 1, true)
  if not nl then return out end
  for name in string.gmatch(string.sub(record, 1, nl - 1), '[^,]+') do
    out[#out + 1] = name
  end
  return out
end

-- Reply of take: {kind, due_ms, member, record, late, gap, skipped, token, handler...}
--   kind "event": dispatch `handler...` for `member`; due = lease deadline; token =
--                 this take's order.tk, to be given to commit
--   kind "lost":  the turn's lease ran out while dispatched; dead-letter `handler...`
--                 with lost.lua, giving it `token` (this take's order.tk)
--   (token is 0 for the other kinds)
--   kind "busy":  a turn is in progress; due = its lease deadline
--   kind "wait":  holding for a missing sequence (or the start); due = end of hold
--   kind "none":  nothing buffered; due = 0
-- `skipped` counts events taken with no handler to run (finished at once).
local function reply(kind, due, member, record, late, gap, skipped, handlers, token)
  local out = {kind, due, member or '', record or '', late or '0', gap or '', skipped or 0,
               token or 0}
  if handlers then
    for i = 1, #handlers do out[#out + 1] = handlers[i] end
  end
  return out
end

local function end_turn(member)
  redis.call('HDEL', K_EVENTS, member)
  redis.call('HDEL', K_ORDER, 'cur', 'state', 'lease', 'clate', 'cgap')
  redis.call('DEL', K_TURN)
end

local function take()
  local o = redis.call('HMGET', K_ORDER, 'cur', 'state', 'lease', 'next', 'since')
  local cur, state, lease = o[1], o[2], tonumber(o[3])
  local nxt, since = tonumber(o[4]), tonumber(o[5])

  if cur then
    if lease and lease > NOW then return reply('busy', lease) end
    local record = redis.call('HGET', K_EVENTS, cur)
    local pending = redis.call('SMEMBERS', K_TURN)
    local cl = redis.call('HMGET', K_ORDER, 'clate', 'cgap')
    if not record or #pending == 0 then
      -- Nothing left to wait for (cannot normally happen): close the turn.
      end_turn(cur)
    elseif state == 'taking' then
      -- The dispatcher died before publishing everything: publish again what has
      -- not finished (a handler already started skips itself if it finished).
      redis.call('HSET', K_ORDER, 'lease', NOW + LEASE)
      local token = redis.call('HINCRBY', K_ORDER, 'tk', 1)
      return reply('event', NOW + LEASE, cur, record, cl[1], cl[2], 0, pending, token)
    else
      -- Published, but the handlers never reported back: they are lost. The caller
      -- dead-letters them and ends the turn (lost.lua, with this take's token); if
      -- it dies or is delayed past the lease first, this comes back (new token).
      redis.call('HSET', K_ORDER, 'state', 'lost', 'lease', NOW + LEASE)
      local token = redis.call('HINCRBY', K_ORDER, 'tk', 1)
      return reply('lost', NOW + LEASE, cur, record, cl[1], cl[2], 0, pending, token)
    end
  end

  local skipped = 0
  while true do
    local head = redis.call('ZRANGE', K_BUFFER, 0, 0, 'WITHSCORES')
    if #head == 0 then
      if since then redis.call('HDEL', K_ORDER, 'since') end
      return reply('none', 0, nil, nil, nil, nil, skipped)
    end
    local member, seq = head[1], tonumber(head[2])
    local late, gap = '0', ''
    if nxt == nil then
      -- Starting rule: sequence 0 starts at once; otherwise wait the hold window
      -- from the first arrival, then start at the lowest sequence buffered.
      if seq ~= 0 and not (since and NOW >= since + HOLD) then
        if not since then
          since = NOW
          redis.call('HSET', K_ORDER, 'since', since)
        end
        return reply('wait', since + HOLD, nil, nil, nil, nil, skipped)
      end
      nxt = seq + 1
      since = nil
      redis.call('HSET', K_ORDER, 'next', nxt, 'first', seq)
      redis.call('HDEL', K_ORDER, 'since')
    elseif seq < nxt - 1 then
      late = '1'
    elseif seq == nxt - 1 then
      -- Same sequence as the event just dispatched (another eventType): in order.
      late = '0'
    elseif seq == nxt then
      nxt = seq + 1
      since = nil
      redis.call('HSET', K_ORDER, 'next', nxt)
      redis.call('HDEL', K_ORDER, 'since')
    else
      if not since then
        since = NOW
        redis.call('HSET', K_ORDER, 'since', since)
      end
      if NOW < since + HOLD then
        return reply('wait', since + HOLD, nil, nil, nil, nil, skipped)
      end
      gap = tostring(nxt) .. '-' .. tostring(seq - 1)
      nxt = seq + 1
      since = nil
      redis.call('HSET', K_ORDER, 'next', nxt)
      redis.call('HDEL', K_ORDER, 'since')
    end
    redis.call('ZREM', K_BUFFER, member)
    local record = redis.call('HGET', K_EVENTS, member)
    local handlers = record and handlers_of(record) or {}
    if #handlers > 0 then
      redis.call('DEL', K_TURN)
      redis.call('SADD', K_TURN, unpack(handlers))
      redis.call('HSET', K_ORDER, 'cur', member, 'state', 'taking', 'lease', NOW + LEASE,
                 'clate', late, 'cgap', gap)
      local token = redis.call('HINCRBY', K_ORDER, 'tk', 1)
      return reply('event', NOW + LEASE, member, record, late, gap, skipped, handlers, token)
    end
    -- No handler registered for it: its turn is over at once.
    redis.call('HDEL', K_EVENTS, member)
    skipped = skipped + 1
  end
end
