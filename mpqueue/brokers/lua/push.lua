-- KEYS: ready:* pmax sched held leases failed errors wake idle failed_at ids paused where + done:<id> per caller-chosen id
-- Enqueue jobs, now or later, in one step; a job due now goes straight to an
-- idle consumer if one is waiting (and the queue is not paused).
-- ARGV: token_prefix, n, then n quads (delay_ms, priority, caller, envelope). delay_ms > 0
-- goes to sched with a due time on the broker's clock, so skewed producers agree.
-- caller '1': the id is the caller's choice; the job is pushed only if no job with that
-- id is waiting or running (the ids HASH), and then that id's old records go (its done
-- record, KEYS[NKEYS + k] for the k-th such item, and any failed-store entry).
-- Returns the 0-based positions of the items not pushed (their id was live).
local prefix, n = ARGV[1], tonumber(ARGV[2])
local now, need_wake = nil, false
local idle = may_hand_off()
local callers, dups = 0, {}
for i = 0, n - 1 do
  local delay, prio, env = tonumber(ARGV[3 + 4 * i]), tonumber(ARGV[4 + 4 * i]), ARGV[6 + 4 * i]
  if ARGV[5 + 4 * i] == '1' then
    callers = callers + 1
    local id = parse(env)
    if id and redis.call('HSETNX', KEYS[IDS], id, '1') == 0 then
      dups[#dups + 1] = i
      delay, env = 0, nil
    elseif id then
      redis.call('DEL', KEYS[NKEYS + callers])
      redis.call('HDEL', KEYS[FAILED], id)
      redis.call('ZREM', KEYS[FAILED_AT], id)
      redis.call('HDEL', KEYS[ERRORS], id)
    end
  end
  if not env then
    -- a duplicate: nothing to push
  elseif delay > 0 then
    now = now or now_ms()
    if schedule(env, now + delay) then need_wake = true end
  else
    if idle then
      now = now or now_ms()
      if hand_off(env, prefix .. i, now) then env = nil else idle = redis.call('LLEN', KEYS[IDLE]) > 0 end
    end
    if env and enqueue(env, prio, false) then need_wake = true end
  end
end
if need_wake then wake() end
return dups
