-- KEYS: ready:* sched held stats failed errors watch cancels ids where dead + done:<id>
-- Cancel one job (Client.cancel, `mpqctl cancel`) in one step, so a race with a
-- worker reserving it has one winner: either it is removed here (it never runs) or
-- reserve.lua held it first (then it gets a cancel request). The job is located by
-- the index (KEYS[WHERE]), whatever the queue's depth: a scheduled one is a ZREM, a
-- ready one at either end of its list is popped, and one deeper in is marked dead
-- (KEYS[DEAD]) where it lies, for reserve.lua to drop: never an LREM of a deep list.
-- ARGV: id, envelope ('' if none: only for a job without an index entry, pushed by a
-- release without the index, as the caller's scan found it), mode ('ask' | 'kill'),
-- ttl_s (how long the cancelled record lives).
-- KEYS[NKEYS + 1]: done:<id>.
-- Returns 'cancelled' (removed unrun), 'requested' (running: asked to stop),
-- 'moved' (an unindexed job not where the envelope said: read it again), or its end
-- so far: 'done', 'was-cancelled', 'failed', 'unknown'.
local id, env, mode, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if mode ~= 'ask' and mode ~= 'kill' then return redis.error_reply('cancel: unknown mode ' .. mode) end
if redis.call('HEXISTS', KEYS[HELD], id) == 1 then
  -- 'kill' wins over an earlier 'ask'; never the other way round
  if mode == 'kill' or redis.call('HEXISTS', KEYS[CANCELS], id) == 0 then
    redis.call('HSET', KEYS[CANCELS], id, mode .. ' ' .. ttl)
  end
  return 'requested'
end

-- Take a ready envelope out of its list: O(1) at either end, else marked dead.
local function unlist(key, listed)
  if redis.call('LINDEX', key, 0) == listed then
    redis.call('LPOP', key)
    drop_dead_heads(key, dead_total())     -- the next one may have been cancelled earlier
  elseif redis.call('LINDEX', key, -1) == listed then
    redis.call('RPOP', key)
  else
    redis.call('HINCRBY', KEYS[DEAD], listed, 1)
    redis.call('HINCRBY', KEYS[STATS], 'dead', 1)
  end
end

local where = redis.call('HGET', KEYS[WHERE], id)
if where then
  local kind, listed = string.sub(where, 1, 1), string.sub(where, 3)
  local _, _, prio = parse(listed)
  redis.call('HDEL', KEYS[WHERE], id)
  if kind == 'r' then
    unlist(KEYS[READY + tonumber(prio or '0')], listed)
    cancelled(id, KEYS[NKEYS + 1], ttl, 'ready')
  else
    redis.call('ZREM', KEYS[SCHED], listed)
    cancelled(id, KEYS[NKEYS + 1], ttl, 'scheduled')
  end
  return 'cancelled'
end
if env ~= '' then
  -- unindexed (an older release pushed it): where the caller's scan saw it
  local jid, _, prio = parse(env)
  if jid == id then
    if redis.call('LREM', KEYS[READY + tonumber(prio)], 1, env) == 1 then
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
