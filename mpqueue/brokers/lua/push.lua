-- Enqueue jobs, now or later, in one step.
-- ARGV: n, then n triples (delay_ms, priority, envelope). delay_ms > 0 goes to
-- sched with a due time on the broker's clock, so skewed producers agree.
local n = tonumber(ARGV[1])
local now, need_wake = nil, false
for i = 0, n - 1 do
  local delay, prio, env = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i]), ARGV[4 + 3 * i]
  if delay > 0 then
    now = now or now_ms()
    if schedule(env, now + delay) then need_wake = true end
  elseif enqueue(env, prio, false) then
    need_wake = true
  end
end
if need_wake then wake() end
return n
