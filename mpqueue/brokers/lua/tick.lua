-- KEYS: ready:* pmax held leases wake idle paused where ticks
-- Claim a schedule's tick and push its job in one step, so the tick fires once
-- however many nodes of the service try it (each node of a service calls this for
-- every tick it computes; the first claim wins, the rest read "taken").
-- ARGV: name, tick_ms, grace_ms, priority, envelope, token
-- Returns {outcome, previous tick ms or -1, broker now ms}; outcome is fired, taken,
-- skipped (too late: recorded, no job), new (a schedule without a record: its first
-- tick tried is recorded, never fired, so a schedule added or renamed starts with
-- its next tick and can't re-fire what another name claimed), or early (not due on
-- the broker's clock: nothing recorded).
local name, tick, grace, prio, env = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
local now = now_ms()
local last, fired = -1, '0'
local rec = redis.call('HGET', KEYS[TICKS], name)
if rec then
  local l, f = string.match(rec, '^(%d+) (%d+)$')
  if l then last, fired = tonumber(l), f end
end
if last >= tick then return {'taken', last, now} end
if tick > now then return {'early', last, now} end
if not rec then
  redis.call('HSET', KEYS[TICKS], name, ARGV[2] .. ' 0')
  return {'new', last, now}
end
if now - tick > grace then
  redis.call('HSET', KEYS[TICKS], name, ARGV[2] .. ' ' .. fired)
  return {'skipped', last, now}
end
redis.call('HSET', KEYS[TICKS], name, ARGV[2] .. ' ' .. ARGV[2])
local handed = may_hand_off() and hand_off(env, ARGV[6], now)
if not handed and enqueue(env, prio, false) then wake() end
return {'fired', last, now}
