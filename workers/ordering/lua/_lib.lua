-- _lib.lua: shared prologue of the per-recording scripts (admit, take, start,
-- finish). workers/ordering/scripts.py prepends it to each of them, so every
-- script below sees these locals. Nothing here runs on its own. The states and
-- transitions are described in workers/ordering/PROTOCOL.md.
--
-- KEYS (1-6 are one recording's and share the hash tag {sid}):
--   1 dedupe    hash  dedupe field ("<eventType>:<sequence>" or "n:<noticeId>") -> inbox entry id
--   2 order     hash  next (next sequence in order), first, cur (member whose turn it is),
--                     pl (publish lease: when its unstarted handlers are published again),
--                     tries (publishes of the current turn), clate, cgap
--   3 buffer    zset  member -> sequence: admitted events not yet taken
--   4 events    hash  member -> record ("<handler,names>\n<header json>\n<raw body>")
--   5 turn      hash  handler of the current event that has not finished ->
--                     "<task id or ->|<deadline ms>" ("-": published, not started yet)
--   6 arrivals  zset  member -> when it was admitted (ms), for buffered events
--   7 timers    zset  sid -> when the recording must be looked at again (global)
--   8 counters  hash  pipeline counters (global)
--   9 dead letters stream (global)
--  10 inbox     stream (global; admit acknowledges its entry)
--  11 record    string: the recording's folded record (JSON), only read here: an
--               "event" reply carries it to the process that folds the event
--  12 timeline  zset: the dashboard's timeline of the recording (sequence -> JSON
--               member, agora_callbacks/recording_timeline.py); finish and the
--               deadline sweep add one member per handler run that ended
--  13 the dashboard's "dead letters" flag (zset sid -> ms, global, trimmed by
--               recordings_index.prune): set when a handler run is dead-lettered
-- ARGV common to every script:
--   1 now_ms (0: the server's clock)   2 ttl_s   3 hold_ms   4 lease_ms (DISPATCH_LEASE_MS)
--   5 deadline_ms (HANDLER_DEADLINE_S in ms)   6 dead letters kept (approximate)
--   7 sid   8 inbox consumer group
--   9 timeline ttl_s (RECORD_TTL_S; 0: no timeline, e.g. a notice:<id> recording)
--  10 timeline members kept (the highest sequences)
--
-- A member is "<sequence>|<dedupe field>"; it names one admitted event.
-- Every script that changes a recording ends with arm(): the recording's timer
-- is set, in the same atomic step, to the next time anything about it is due
-- (or removed when nothing is). The timer sweep only reads timers.

local K_DEDUPE, K_ORDER, K_BUFFER, K_EVENTS, K_TURN, K_ARRIVALS =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_TIMERS, K_COUNTERS, K_DEADLETTERS, K_INBOX = KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_RECORD, K_TIMELINE, K_DLFLAG = KEYS[11], KEYS[12], KEYS[13]

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
local DEADLINE = tonumber(ARGV[5])
local DL_MAXLEN = ARGV[6]
local SID = ARGV[7]
local GROUP = ARGV[8]
local TL_TTL = tonumber(ARGV[9]) or 0
local TL_MAX = tonumber(ARGV[10]) or 0
-- Publishes of one turn are retried with a growing lease, at most this many times
-- the first one (a long queue backlog must not multiply the copies).
local MAX_BACKOFF = 32

-- An integer as decimal digits (tostring would give "1e+15" from 10^15 on).
local function int(n)
  return string.format('%.0f', n)
end

local function count(name, n)
  if n and n > 0 then redis.call('HINCRBY', K_COUNTERS, name, int(n)) end
end

-- Every key of the recording lives DEDUPE_TTL_S after its last touch.
local function touch()
  for i = 1, 6 do redis.call('EXPIRE', KEYS[i], TTL) end
end

-- The recording's timer: due at `due` (ms), or no timer when due is nil or 0.
local function arm(due)
  if due and due > 0 then
    redis.call('ZADD', K_TIMERS, int(due), SID)
  else
    redis.call('ZREM', K_TIMERS, SID)
  end
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

-- A handler's entry in the turn hash: (task id or "-", deadline ms).
local function parse_slot(value)
  local bar = string.find(value, '|', 1, true)
  return string.sub(value, 1, bar - 1), tonumber(string.sub(value, bar + 1))
end

-- One dead letter of kind "handler" for `handler` of the event `record`, in the
-- fields agora_callbacks/deadletters.py reads.
local function dead_letter(record, member, handler, reason, detail, exc)
  local first = string.find(record, '\n', 1, true)
  local second = string.find(record, '\n', first + 1, true)
  local header = cjson.decode(string.sub(record, first + 1, second - 1))
  local body = string.sub(record, second + 1)
  local meta = header['m']
  if type(meta) ~= 'table' or next(meta) == nil then meta = cjson.decode('{}') end
  redis.call('XADD', K_DEADLETTERS, 'MAXLEN', '~', DL_MAXLEN, '*',
             'kind', 'handler', 'reason', reason, 'detail', detail, 'body', body,
             'meta', cjson.encode(meta), 'at', int(NOW), 'key', header['k'] or '',
             'handler', handler, 'exc', exc or '',
             'extra', cjson.encode({sid = SID, member = member}))
  count('deadletters_handler', 1)
end

-- At most n bytes of s, cut at a UTF-8 character boundary.
local function clip(s, n)
  if #s <= n then return s end
  local cut = n
  while cut > 0 do
    local b = string.byte(s, cut + 1)
    if b < 128 or b >= 192 then break end
    cut = cut - 1
  end
  return string.sub(s, 1, cut)
end

-- The dashboard's timeline: one handler run of `member` that ended (outcome "done",
-- a dead letter's reason, or "lost"), as the member recording_timeline.load reads;
-- a dead-lettered run also sets the recordings list's "dead letters" flag. The
-- timeline keeps its TL_MAX highest sequences and expires TL_TTL after its last write.
local function timeline_run(member, handler, outcome, ms, detail, exc)
  if TL_TTL <= 0 then return end
  local seq = tonumber(string.match(member, '^(%-?%d+)|'))
  if not seq then return end
  local run = {k = 'h', handler = handler, outcome = outcome,
               ms = tonumber(ms) or cjson.null, exception = clip(exc or '', 500),
               redriven = false}
  if detail and detail ~= '' then run['detail'] = clip(detail, 500) end
  -- The integers spliced in as digits (cjson writes 14 significant digits only).
  local json = '{"seq":' .. int(seq) .. ',"at_ms":' .. int(NOW) .. ','
    .. string.sub(cjson.encode(run), 2)
  redis.call('ZADD', K_TIMELINE, int(seq), json)
  if TL_MAX > 0 and redis.call('ZCARD', K_TIMELINE) > TL_MAX then
    redis.call('ZREMRANGEBYRANK', K_TIMELINE, 0, -TL_MAX - 1)
  end
  redis.call('EXPIRE', K_TIMELINE, TL_TTL)
  if outcome ~= 'done' then redis.call('ZADD', K_DLFLAG, int(NOW), SID) end
end

-- Reply of take: {kind, due_ms, member, record, late, gap, republished, now_ms,
--                 folded record, handler...}
--   "event": publish the handler tasks of `handler...` for `member` (the first
--            publish of the turn, or again the handlers that have not started
--            when `republished` is "1"); due = when they are published again if
--            none has started
--   "busy":  a turn is in progress; due = when to look again
--   "wait":  holding for a missing sequence (or the start); due = end of hold
--   "none":  nothing buffered; due = 0
-- now_ms and the recording's folded record (its JSON, '' when none) come with an
-- "event": the publisher folds the event into that record before publishing.
local function reply(kind, due, member, record, late, gap, republished, handlers)
  local out = {kind, due, member or '', record or '', late or '0', gap or '',
               republished or '0'}
  if kind == 'event' then
    out[#out + 1] = int(NOW)
    -- Never fails the script: a key of another type is read as no record (the
    -- fold then reads it itself, and its error is the fold's, not the protocol's).
    local state = ''
    if redis.call('TYPE', K_RECORD)['ok'] == 'string' then
      state = redis.call('GET', K_RECORD)
    end
    out[#out + 1] = state
  end
  if handlers then
    for i = 1, #handlers do out[#out + 1] = handlers[i] end
  end
  return out
end

local function end_turn(member)
  redis.call('HDEL', K_EVENTS, member)
  redis.call('HDEL', K_ORDER, 'cur', 'pl', 'tries', 'clate', 'cgap')
  redis.call('DEL', K_TURN)
end

-- When the current turn needs a look: the earliest handler deadline, and the
-- publish lease while a handler has not started. nil: no handler left.
local function turn_due()
  local slots = redis.call('HGETALL', K_TURN)
  local due, unstarted = nil, false
  for i = 1, #slots, 2 do
    local owner, deadline = parse_slot(slots[i + 1])
    if owner == '-' then unstarted = true end
    if not due or deadline < due then due = deadline end
  end
  if unstarted then
    local pl = tonumber(redis.call('HGET', K_ORDER, 'pl')) or NOW
    if pl < due then due = pl end
  end
  return due
end

-- The current turn is due: dead-letter the handlers past their deadline (never
-- reported, or never started), and publish again those not started yet when the
-- publish lease ran out. Returns a take reply, or nil when no handler is left.
local function look_at_turn(cur)
  local record = redis.call('HGET', K_EVENTS, cur)
  local slots = redis.call('HGETALL', K_TURN)
  if not record then return nil end
  local unstarted = {}
  for i = 1, #slots, 2 do
    local handler = slots[i]
    local owner, deadline = parse_slot(slots[i + 1])
    if deadline <= NOW then
      local detail
      if owner == '-' then
        detail = 'never started within HANDLER_DEADLINE_S=' .. int(DEADLINE / 1000)
      else
        detail = 'no report from the handler within HANDLER_DEADLINE_S=' .. int(DEADLINE / 1000)
      end
      dead_letter(record, cur, handler, 'lost', detail, '')
      timeline_run(cur, handler, 'lost', nil, detail, '')
      redis.call('HDEL', K_TURN, handler)
    elseif owner == '-' then
      unstarted[#unstarted + 1] = handler
    end
  end
  if redis.call('HLEN', K_TURN) == 0 then return nil end
  local o = redis.call('HMGET', K_ORDER, 'pl', 'tries', 'clate', 'cgap')
  local pl = tonumber(o[1]) or 0
  if #unstarted > 0 and pl <= NOW then
    table.sort(unstarted)
    local tries = tonumber(o[2]) or 1
    local factor = math.min(2 ^ tries, MAX_BACKOFF)
    redis.call('HSET', K_ORDER, 'pl', int(NOW + LEASE * factor), 'tries', tries + 1)
    count('republished', 1)
    local due = turn_due()
    arm(due)
    return reply('event', due, cur, record, o[3], o[4], '1', unstarted)
  end
  local due = turn_due()
  arm(due)
  return reply('busy', due)
end

local function take()
  local o = redis.call('HMGET', K_ORDER, 'cur', 'next')
  local cur, nxt = o[1], tonumber(o[2])

  if cur then
    local due = turn_due()
    if due and due > NOW then
      arm(due)
      return reply('busy', due)
    end
    local r = look_at_turn(cur)
    if r then return r end
    end_turn(cur)
  end

  local skipped = 0
  while true do
    local head = redis.call('ZRANGE', K_BUFFER, 0, 0, 'WITHSCORES')
    if #head == 0 then
      count('no_handler', skipped)
      arm(nil)
      return reply('none', 0)
    end
    local member, seq = head[1], tonumber(head[2])
    local late, gap, skipped_seqs = '0', '', 0
    local in_order = nxt ~= nil and seq <= nxt
    if nxt == nil and seq == 0 then in_order = true end
    if not in_order then
      -- A missing sequence before `member` (or the start of the recording, when
      -- the first event seen is not sequence 0): wait for it, but no event waits
      -- longer than REORDER_HOLD_MS after its own arrival.
      local oldest = redis.call('ZRANGE', K_ARRIVALS, 0, 0, 'WITHSCORES')
      local since = tonumber(oldest[2]) or NOW
      if NOW < since + HOLD then
        count('no_handler', skipped)
        arm(since + HOLD)
        return reply('wait', since + HOLD)
      end
      if nxt ~= nil then
        gap = int(nxt) .. '-' .. int(seq - 1)
        skipped_seqs = seq - nxt
      end
    end
    if nxt == nil then
      redis.call('HSET', K_ORDER, 'first', int(seq))
    elseif seq < nxt - 1 then
      late = '1'
    end
    if nxt == nil or seq >= nxt then
      nxt = seq + 1
      redis.call('HSET', K_ORDER, 'next', int(nxt))
    end
    redis.call('ZREM', K_BUFFER, member)
    redis.call('ZREM', K_ARRIVALS, member)
    count('gaps', skipped_seqs)
    if late == '1' then count('late', 1) end
    local record = redis.call('HGET', K_EVENTS, member)
    local handlers = record and handlers_of(record) or {}
    if #handlers > 0 then
      local deadline = int(NOW + DEADLINE)
      for i = 1, #handlers do
        redis.call('HSET', K_TURN, handlers[i], '-|' .. deadline)
      end
      redis.call('HSET', K_ORDER, 'cur', member, 'pl', int(NOW + LEASE), 'tries', 1,
                 'clate', late, 'cgap', gap)
      count('no_handler', skipped)
      count('dispatched', 1)
      arm(NOW + LEASE)
      return reply('event', NOW + LEASE, member, record, late, gap, '0', handlers)
    end
    -- No handler registered for it: its turn is over at once.
    redis.call('HDEL', K_EVENTS, member)
    skipped = skipped + 1
  end
end

-- Acknowledge and delete an inbox entry; true if this call acknowledged it
-- (false: it was acknowledged before, by this or another consumer).
local function settle(entry)
  local acked = redis.call('XACK', K_INBOX, GROUP, entry)
  redis.call('XDEL', K_INBOX, entry)
  return acked == 1
end
