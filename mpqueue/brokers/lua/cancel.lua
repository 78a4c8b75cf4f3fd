-- Cancel one job (Client.cancel, `mpqctl cancel`) in one step, so a race with a
-- worker reserving it has one winner: either the LREM/ZREM here removes it (it
-- never runs) or reserve.lua held it first (then it gets a cancel request).
-- ARGV: id, envelope (as find() read it from ready or sched; '' if none), mode
-- ('ask' | 'kill'), ttl_s (how long the cancelled record lives).
-- KEYS[NKEYS + 1]: done:<id>.
-- Returns 'cancelled' (removed unrun), 'requested' (running: asked to stop),
-- 'moved' (not where the envelope said: read it again), or its end so far:
-- 'done', 'was-cancelled', 'failed', 'unknown'.
local id, env, mode, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if mode ~= 'ask' and mode ~= 'kill' then return redis.error_reply('cancel: unknown mode ' .. mode) end
if redis.call('HEXISTS', KEYS[HELD], id) == 1 then
  -- 'kill' wins over an earlier 'ask'; never the other way round
  if mode == 'kill' or redis.call('HEXISTS', KEYS[CANCELS], id) == 0 then
    redis.call('HSET', KEYS[CANCELS], id, mode .. ' ' .. ttl)
  end
  return 'requested'
end
if env ~= '' then
  local jid, _, prio = parse(env)
  if jid == id then
    if redis.call('LREM', KEYS[tonumber(prio) + 1], 1, env) == 1 then
      cancelled(id, KEYS[NKEYS + 1], ttl, 'ready')
      return 'cancelled'
    end
    if redis.call('ZREM', KEYS[SCHED], env) == 1 then
      cancelled(id, KEYS[NKEYS + 1], ttl, 'scheduled')
      return 'cancelled'
    end
  end
end
local done = redis.call('GET', KEYS[NKEYS + 1])
if done then
  if string.find(done, '"state":"cancelled"', 1, true) then return 'was-cancelled' end
  return 'done'
end
if redis.call('HEXISTS', KEYS[FAILED], id) == 1 then return 'failed' end
if env ~= '' then return 'moved' end
return 'unknown'
