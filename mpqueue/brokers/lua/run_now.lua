-- KEYS: ready:* pmax sched wake where
-- Make delayed jobs due now (the dashboard's "run now"): each is moved from the
-- delayed ZSET to the end of its priority's list, attempts unchanged.
-- ARGV: envelopes, as scheduled() or find() read them (ZREM is the check that
-- each is still delayed: one that was promoted, cancelled or run meanwhile is
-- left alone). Returns how many were moved.
local moved, need_wake = 0, false
for _, env in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[SCHED], env) == 1 then
    local id, _, prio = parse(env)
    if enqueue(env, tonumber(prio or '0'), false) then need_wake = true end
    moved = moved + 1
  end
end
if need_wake then wake() end
return moved
