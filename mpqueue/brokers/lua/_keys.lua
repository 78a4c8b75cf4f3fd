-- The data model of one queue, and the helpers the scripts share. Every key is under
-- the queue's hash tag "mpq:{<queue>}:" so a queue lives in one Redis Cluster slot.
-- A script names the keys it uses in its header line, "-- KEYS: held leases ...", and
-- gets just those, in that order: redis_scripts.py writes each name as its position
-- (HELD, LEASES -> 1, 2; "ready:*" is the ten lists ready:0..9 from READY on; NKEYS is
-- their number, so extra keys such as done:<id> follow from KEYS[NKEYS + 1]), and sends
-- only the helpers below that the script calls. The keys:
--   ready:0..9  LIST    envelopes waiting, one list per priority (9 first): KEYS[READY + prio]
--   pmax        STRING  upper bound of the priorities whose list may be non-empty
--   sched       ZSET    envelope -> due time (ms, broker clock): delayed jobs, retries
--   held        HASH    id -> "<token> <consumer> <envelope>": reserved jobs
--   leases      ZSET    id -> lease deadline (ms, broker clock)
--   stats       HASH    done, failed: totals
--   failed      HASH    id -> "<envelope>\n<error json>": the failed store
--   errors      HASH    id -> last error json of a job waiting for a retry
--   wake        channel name (not a key): PUBLISH here wakes idle consumers;
--               "<wake>:<consumer>" is that consumer's channel for handed-over jobs
--   idle        LIST    "<consumer> <lease_ms>": consumers waiting, oldest first
--   failed_at   ZSET    id -> time of failure (ms, broker clock): the failed store's
--               order, written with the failed HASH in the same script
--   watch       ZSET    id -> expiry (ms, broker clock): jobs a caller waits on
--               (Client.result); "<watch>:<id>" is the channel their end is told on
--   cancels     HASH    id -> "ask <ttl_s>" | "kill <ttl_s>": cancel requests of running
--               jobs; whatever way the job ends next, it ends as cancelled
--   ids         HASH    caller-chosen id -> "1" while its job is waiting or running
--               (push.lua's dedup); finished() drops it at the job's end
--   paused      STRING  "1" while the queue is paused (pause.lua, resume.lua): reserve
--               reserves nothing and nobody joins the idle list, so no push hands a
--               job over; acks, and the promotion of due delayed jobs, go on
--   where       HASH    id -> "r <envelope>" (in a ready list) | "s <envelope>" (in sched):
--               the index of waiting jobs, kept by enqueue() and schedule() here and
--               by every script that takes a job out of ready or sched, so find.lua
--               and cancel.lua know where a job is in O(1), at any depth. Held,
--               failed and done jobs are keyed by id already and are not in it.
--   dead        HASH    envelope -> n: ready envelopes cancelled where they lie in their
--               list (an LREM of a deep list would block the server for O(depth));
--               reserve.lua drops them as it pops them, and keeps the head of every
--               list live (age reads LINDEX 0). Their total is stats field "dead",
--               which the ready counts subtract.
--   ticks       HASH    schedule name -> "<last tick claimed ms> <last tick fired ms>" (tick.lua)
--   history     ZSET    "<interval start ms> <done_total> <failed_total>" by the interval's
--               start: the throughput history (history.lua)
--   rate        STRING  the rate limit's theoretical arrival time of the next job (ms, broker
--               clock, core/limits.py), expiring when it is past: reserve.lua's GCRA
--   done:<id>   STRING  a finished job's done record (result, or cancelled), with its TTL
-- Index cost: one HASH entry per waiting job holding a copy of its envelope (so `mpqctl job`
-- shows a ready job's arguments without a scan); bench/scale.py measures the bytes.
-- Jobs pushed by a release without the index (0.1.0, or an old node during a rolling
-- upgrade) have no entry: find.lua reports whether the index covers every waiting job
-- (HLEN where == the jobs in ready and sched, less the dead), and only when it does not
-- does the caller fall back to the old scan.
-- An envelope is "<id> <attempts> <priority> <json body>".

-- On a Cluster, redis_scripts.py swaps in SPUBLISH: sharded pub/sub lives on the queue's
-- own shard, and its receiver count is exact there (PUBLISH's counts only the
-- clients of the node that ran the script, while every node delivers it).
local PUBLISH = 'PUBLISH'
local HANDOFF_LEASE_MS = 15000   -- an unconfirmed hand-off's lease (see hand_off)

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function parse(env)
  return string.match(env, '^(%S+) (%d+) (%d) (.*)$')
end

-- Just the id of an envelope (nil for junk), without copying its body.
local function id_of(env)
  return string.match(env, '^(%S+) %d+ %d ')
end

-- Append (or, for a job handed back, prepend) to its priority's list. Returns
-- true when the list was empty, i.e. idle consumers may be waiting for it.
local function enqueue(env, prio, front)
  local id = id_of(env)
  if id then redis.call('HSET', KEYS[WHERE], id, 'r ' .. env) end
  local n
  if front then n = redis.call('LPUSH', KEYS[READY + prio], env)
  else n = redis.call('RPUSH', KEYS[READY + prio], env) end
  if prio > 0 and prio > tonumber(redis.call('GET', KEYS[PMAX]) or '0') then
    redis.call('SET', KEYS[PMAX], prio)
  end
  return n == 1
end

-- Schedule for later. Returns true when it is now the earliest due job, so
-- waiting consumers must shorten their timers.
local function schedule(env, due)
  local id = id_of(env)
  if id then redis.call('HSET', KEYS[WHERE], id, 's ' .. env) end
  local first = redis.call('ZRANGE', KEYS[SCHED], 0, 0, 'WITHSCORES')
  redis.call('ZADD', KEYS[SCHED], due, env)
  return first[2] == nil or due < tonumber(first[2])
end

local function wake()
  redis.call(PUBLISH, KEYS[WAKE], '1')
end

local function paused()
  return redis.call('EXISTS', KEYS[PAUSED]) == 1
end

-- Whether a new job may go straight to an idle consumer (hand_off): someone waits,
-- and the queue is not paused (a consumer that joined the idle list before the
-- pause is still there; the job waits in its list for the resume instead).
local function may_hand_off()
  return redis.call('LLEN', KEYS[IDLE]) > 0 and not paused()
end

-- The number of dead (cancelled, still listed) ready envelopes; 0 on the hot path.
local function dead_total()
  return tonumber(redis.call('HGET', KEYS[STATS], 'dead') or '0')
end

-- Whether `env`, just popped from a ready list, is a cancelled one (then it is
-- forgotten here and must not run). `ndead`: dead_total(), read once per call.
local function popped_dead(env, ndead)
  if ndead == 0 then return false end
  local n = redis.call('HINCRBY', KEYS[DEAD], env, -1)
  if n < 0 then
    redis.call('HDEL', KEYS[DEAD], env)
    return false
  end
  if n == 0 then redis.call('HDEL', KEYS[DEAD], env) end
  if redis.call('HINCRBY', KEYS[STATS], 'dead', -1) <= 0 then redis.call('HDEL', KEYS[STATS], 'dead') end
  return true
end

-- Pop the dead envelopes at the head of ready list `key`, so the head is a live job
-- (the oldest-age read uses LINDEX 0). Returns the dead total left.
local function drop_dead_heads(key, ndead)
  while ndead > 0 do
    local head = redis.call('LINDEX', key, 0)
    if not head or not redis.call('HGET', KEYS[DEAD], head) then break end
    redis.call('LPOP', key)
    popped_dead(head, ndead)
    ndead = ndead - 1
  end
  return ndead
end

-- Whether a ready list at priority p or below holds a job (a cancelled one may count).
local function ready_from(p)
  for q = p, 0, -1 do
    if redis.call('LLEN', KEYS[READY + q]) > 0 then return true end
  end
  return false
end

-- `env` as held (attempt counted) under `token`: its id and its new envelope.
local function as_held(env, token)
  local id, n, prio, body = parse(env)
  if id then return id, id .. ' ' .. (tonumber(n) + 1) .. ' ' .. prio .. ' ' .. body end
  -- Junk someone pushed into our list: give it an id and a header so the
  -- worker can move it to the failed store as bad_payload.
  id = 'bad-' .. token
  return id, id .. ' 1 0 ' .. env
end

-- Reserve `env` (attempt counted, lease on the broker's clock) for `consumer`.
-- Returns its id and the envelope as held. (reserve.lua writes a batch at once.)
local function hold(env, token, consumer, lease_ms, now)
  local id, held = as_held(env, token)
  redis.call('HDEL', KEYS[WHERE], id)
  redis.call('HSET', KEYS[HELD], id, token .. ' ' .. consumer .. ' ' .. held)
  redis.call('ZADD', KEYS[LEASES], now + lease_ms, id)
  return id, held
end

-- Hand a new job straight to an idle consumer: reserved for it exactly as by
-- reserve.lua, and sent in the wake-up message itself, which saves the consumer
-- a round trip. PUBLISH counts receivers: if the consumer is gone, the
-- reservation is undone and the next idle consumer is tried. Returns true if handed.
-- The count can lie (a subscriber whose host died counts until Redis notices), so the
-- reservation is held as "<consumer>+", unconfirmed, until the consumer confirms it
-- (confirm.lua) as it starts the job: an unconfirmed hand-off whose lease ends was
-- never taken, and recovery hands it back without spending its attempt.
local function hand_off(env, token, now)
  if not parse(env) then return false end
  while true do
    local entry = redis.call('LPOP', KEYS[IDLE])
    if not entry then return false end
    local consumer, lease = string.match(entry, '^(%S+) (%d+)$')
    if consumer then
      -- A short lease until the receipt, which gives it the consumer's own: a hand-off
      -- nobody took comes back within seconds, not after a whole job's timeout.
      local id, held = hold(env, token, consumer .. '+', math.min(tonumber(lease), HANDOFF_LEASE_MS), now)
      if redis.call(PUBLISH, KEYS[WAKE] .. ':' .. consumer, token .. ' ' .. held) > 0 then return true end
      redis.call('HDEL', KEYS[HELD], id)
      redis.call('ZREM', KEYS[LEASES], id)
    end
  end
end

-- Remove a reservation if `token` still owns it; returns its envelope or nil.
-- This is the fence: a worker presumed dead cannot settle a job handed to another.
local function take_held(id, token)
  local held = redis.call('HGET', KEYS[HELD], id)
  if not held then return nil end
  local t, _, env = string.match(held, '^(%S+) (%S+) (.*)$')
  if t ~= token then return nil end
  redis.call('HDEL', KEYS[HELD], id)
  redis.call('ZREM', KEYS[LEASES], id)
  return env
end

-- Job handles (Client.result, Client.cancel) ------------------------------------
-- Whether KEYS[k], one of the per-job side records (watch, cancels, ids), exists, read
-- once per call: they are empty on most queues, so one EXISTS of all three answers
-- for every ack of the call (each is asked alone only when some exist), instead of a
-- lookup per ack. Scripts that add to them (watch, cancel, push, requeue) never ask
-- here after adding, so the answer holds for the call.
local present = {}
local function present_once(k)
  if present[k] == nil then
    if present.any == nil then
      present.any = redis.call('EXISTS', KEYS[CANCELS], KEYS[IDS], KEYS[WATCH]) > 0
    end
    present[k] = present.any and redis.call('EXISTS', KEYS[k]) == 1
  end
  return present[k]
end

-- A job reached its end (done, failed, cancelled): tell a caller waiting on it, if
-- any. `record`: the done record, or the failed store's "<envelope>\n<error>".
-- Its cancel request and its caller-chosen id, if any, are spent.
local function finished(id, state, record)
  if present_once(CANCELS) then redis.call('HDEL', KEYS[CANCELS], id) end
  if present_once(IDS) then redis.call('HDEL', KEYS[IDS], id) end
  if present_once(WATCH) and redis.call('ZSCORE', KEYS[WATCH], id) then
    redis.call('ZREM', KEYS[WATCH], id)
    redis.call(PUBLISH, KEYS[WATCH] .. ':' .. id, state .. ' ' .. record)
  end
end

-- The done record of a cancelled job, kept like a result for `ttl` s (done_key: done:<id>).
local function cancelled(id, done_key, ttl, was)
  local now = now_ms()
  local record = '{"state":"cancelled","cancelled_at":' .. string.format('%.3f', now / 1000) ..
                 ',"was":"' .. was .. '"}'
  if ttl > 0 then redis.call('SET', done_key, record, 'EX', ttl) end
  redis.call('HINCRBY', KEYS[STATS], 'cancelled', 1)
  redis.call('HDEL', KEYS[ERRORS], id)
  finished(id, 'cancelled', record)
end

-- A running job's cancel request: nil, or its ttl (the record's lifetime) and
-- what it asked ('ask' or 'kill').
local function cancel_request(id)
  if not present_once(CANCELS) then return nil end
  local req = redis.call('HGET', KEYS[CANCELS], id)
  if not req then return nil end
  return tonumber(string.match(req, '(%d+)$') or '0'), string.match(req, '^(%a+)') or 'ask'
end

-- How retry, release and fail begin: take the job from `token` (the fence) and, if a
-- cancel request stands, end it as cancelled instead (done_key: its done:<id>).
-- Returns its envelope, or nil and the script's reply: 0 (the token no longer owns
-- the job) or what the cancel request asked ('ask' or 'kill').
local function settle_start(id, token, done_key)
  local env = take_held(id, token)
  if not env then return nil, 0 end
  local cancel_ttl, asked = cancel_request(id)
  if cancel_ttl then
    cancelled(id, done_key, cancel_ttl, 'running')
    return nil, asked
  end
  return env
end
