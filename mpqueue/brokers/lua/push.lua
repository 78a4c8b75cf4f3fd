-- Enqueue jobs, now or later, in one step; a job due now goes straight to an
-- idle consumer if one is waiting.
-- ARGV: token_prefix, n, then n triples (delay_ms, priority, envelope). delay_ms > 0
-- goes to sched with a due time on the broker's clock, so skewed producers agree.
local prefix, n = ARGV[1], tonumber(ARGV[2])
local now, need_wake = nil, false
local idle = redis.call('LLEN', KEYS[IDLE]) > 0
for i = 0, n - 1 do
  local delay, prio, env = tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i]), ARGV[5 + 3 * i]
  if delay > 0 then
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
return n
