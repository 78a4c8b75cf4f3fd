-- Settle one reserved job other than by a plain ack, fenced by its token.
-- ARGV: id, token, action, ms, record, hook_envelope
--   retry   : spent attempt; back to the queue after `ms` (record = last error)
--   release : handed back unrun (graceful stop): attempt refunded, front of its queue
--   fail    : to the failed store (record = error); hook_envelope, if any, is the
--             failure-hook job, enqueued in the same step so the hook can't be lost
--   extend  : the lease now ends `ms` from now
-- KEYS[NKEYS + 1]: done:<id>. A job with a cancel request (cancel.lua) ends as
-- cancelled whichever way it is settled: no retry, no failure hook.
-- Returns 1, 0 when the token no longer owns the job (stale worker), or what the
-- cancel request asked ('ask' or 'kill') when it ended the job as cancelled.
local id, token, action, ms, record, hook = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
if action == 'extend' then
  local held = redis.call('HGET', KEYS[HELD], id)
  if not held or string.match(held, '^(%S+)') ~= token then return 0 end
  redis.call('ZADD', KEYS[LEASES], now_ms() + ms, id)
  return 1
end
-- Check the action before touching anything: Redis keeps the writes a script
-- made before an error, so a late check would drop the job.
if action ~= 'retry' and action ~= 'release' and action ~= 'fail' then
  return redis.error_reply('settle: unknown action ' .. action)
end
local env = take_held(id, token)
if not env then return 0 end
local cancel_ttl, asked = cancel_request(id)
if cancel_ttl then
  cancelled(id, KEYS[NKEYS + 1], cancel_ttl, 'running')
  return asked
end
local jid, n, prio, body = parse(env)
prio = tonumber(prio or '0')
if action == 'retry' then
  redis.call('HSET', KEYS[ERRORS], id, record)
  if ms > 0 then
    if schedule(env, now_ms() + ms) then wake() end
  elseif enqueue(env, prio, false) then wake() end
elseif action == 'release' then
  if jid then env = jid .. ' ' .. math.max(0, tonumber(n) - 1) .. ' ' .. prio .. ' ' .. body end
  if enqueue(env, prio, true) then wake() end
else -- fail
  redis.call('HSET', KEYS[FAILED], id, env .. '\n' .. record)
  redis.call('ZADD', KEYS[FAILED_AT], now_ms(), id)
  redis.call('HINCRBY', KEYS[STATS], 'failed', 1)
  redis.call('HDEL', KEYS[ERRORS], id)
  if hook ~= '' and enqueue(hook, 9, false) then wake() end
  finished(id, 'failed', env .. '\n' .. record)
end
return 1
