-- KEYS: ready:* pmax sched held leases stats errors idle watch cancels ids paused where dead rate + done:<id> per ack
-- Ack finished jobs, promote due delayed jobs, and reserve up to `count` jobs,
-- in one step: a worker in a steady stream pays one round trip per job.
-- ARGV: consumer, token_prefix, count, lease_ms, idle, interval_ms, burst, n_acks,
--       then per ack: id, token, done_record, ttl_s, first_attempt
-- interval_ms > 0: the queue's rate limit (core/limits.py), a GCRA on KEYS[RATE]: at most
--       `burst` jobs at once, one per interval_ms on average, across every consumer. A
--       rate-limited consumer never joins the idle list (a push's hand-off would pass the limit).
-- idle: "" or letters: L = the consumer leaves the idle list first; E = if nothing
--       was reserved, it enters the idle list (pushes may hand it jobs directly)
-- KEYS[NKEYS + i]: done:<id> of the i-th ack
-- Cancelled envelopes (KEYS[DEAD]) popped on the way are dropped, not counted.
-- Returns {acked, ms_until_next_due or -1, token1, envelope1, token2, ...}; the next due
-- time only when fewer than `count` jobs were reserved (-1 otherwise): the earlier of the
-- first delayed job's and, when the rate limit cut the count, the limit's next opening.
-- A paused queue (KEYS[PAUSED]) reserves nothing and its consumers do not join the
-- idle list; the acks and the promotion of due delayed jobs happen all the same.
local consumer, prefix = ARGV[1], ARGV[2]
local count, lease, idle = tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local interval, burst, nacks = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local now = now_ms()
local entry = consumer .. ' ' .. lease
if string.find(idle, 'L', 1, true) then redis.call('LREM', KEYS[IDLE], 0, entry) end

local acked, done = 0, 0
for i = 1, nacks do
  local b = 8 + (i - 1) * 5
  local id, ttl = ARGV[b + 1], tonumber(ARGV[b + 4])
  if take_held(id, ARGV[b + 2]) then
    acked = acked + 1
    local cancel_ttl = cancel_request(id)
    if cancel_ttl then         -- it ended after a cancel request: cancelled, whatever it returned
      cancelled(id, KEYS[NKEYS + i], cancel_ttl, 'running')
    else
      done = done + 1
      if ttl > 0 then redis.call('SET', KEYS[NKEYS + i], ARGV[b + 3], 'EX', ttl) end
      finished(id, 'done', ARGV[b + 3])
    end
    if ARGV[b + 5] ~= '1' then redis.call('HDEL', KEYS[ERRORS], id) end
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[STATS], 'done', done) end     -- one write for the batch

local due = redis.call('ZRANGEBYSCORE', KEYS[SCHED], '-inf', now, 'LIMIT', 0, 1000)
for _, env in ipairs(due) do
  local _, _, p = parse(env)
  redis.call('ZREM', KEYS[SCHED], env)
  enqueue(env, tonumber(p or '0'), false)
end

-- The jobs reserved here are written as hold() would, but a batch in one HDEL, HSET
-- and ZADD each instead of three commands a job (nothing below reads these keys).
local ids, records, leases = {}, {}, {}
local function write_holds()
  if #ids == 0 then return end
  redis.call('HDEL', KEYS[WHERE], unpack(ids))
  redis.call('HSET', KEYS[HELD], unpack(records))
  redis.call('ZADD', KEYS[LEASES], unpack(leases))
  ids, records, leases = {}, {}, {}
end

local out = {acked, -1}
local stopped = paused()
if stopped then count = 0 end
local asked, tat = count, nil
if interval > 0 and count > 0 then
  tat = math.max(tonumber(redis.call('GET', KEYS[RATE]) or '0'), now)
  -- (a hair over: float sums of the interval can land just under a whole job)
  count = math.max(0, math.min(count, math.floor((now + burst * interval - tat) / interval + 1e-9)))
end
local pmax = tonumber(redis.call('GET', KEYS[PMAX]) or '0')
local p, got, top = pmax, 0, pmax
local ndead = count > 0 and dead_total() or 0
while got < count and p >= 0 do
  local env = redis.call('LPOP', KEYS[READY + p])
  if env and popped_dead(env, ndead) then
    ndead = ndead - 1          -- cancelled where it lay: dropped, never run
  elseif env then
    got = got + 1
    local token = prefix .. got
    local id, held = as_held(env, token)
    ids[#ids + 1] = id
    records[#records + 1], records[#records + 2] = id, token .. ' ' .. consumer .. ' ' .. held
    leases[#leases + 1], leases[#leases + 2] = now + lease, id
    if #ids >= 500 then write_holds() end    -- unpack() has a limit; a prefetch this big is rare
    out[#out + 1] = token
    out[#out + 1] = held
  else
    -- every list above p is empty: lower the bound so later calls skip them
    if p == top then top = math.max(p - 1, 0) end
    p = p - 1
  end
end
write_holds()
if tat then
  if got > 0 then
    tat = tat + got * interval
    redis.call('SET', KEYS[RATE], tostring(tat), 'PX', math.max(1, math.ceil(tat - now)))
  end
  -- cut by the limit with jobs still waiting: count it (mpqctl status, metrics)
  if count < asked and ready_from(p) then redis.call('HINCRBY', KEYS[STATS], 'throttled', 1) end
end
-- the list we stopped in may now start with a cancelled envelope: keep its head live
if ndead > 0 and p >= 0 then drop_dead_heads(KEYS[READY + p], ndead) end
if top ~= pmax then
  if top == 0 then redis.call('DEL', KEYS[PMAX]) else redis.call('SET', KEYS[PMAX], top) end
end

if got == 0 and not stopped and interval == 0 and string.find(idle, 'E', 1, true) then redis.call('RPUSH', KEYS[IDLE], entry) end

-- The next due time matters only to a caller that will wait: one that got fewer jobs
-- than it asked for (a pure ack asks for none).
if got < asked then
  local first = redis.call('ZRANGE', KEYS[SCHED], 0, 0, 'WITHSCORES')
  if first[2] then out[2] = math.max(0, tonumber(first[2]) - now) end
  if count < asked then      -- the limit cut it: look again when it lets the next job through
    local opens = math.max(0, math.ceil(tat - (burst - 1) * interval - now))
    if out[2] < 0 or opens < out[2] then out[2] = opens end
  end
end
return out
