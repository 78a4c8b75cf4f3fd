-- KEYS: ready:* pmax sched held leases stats errors wake watch cancels ids where + done:<id>
-- A failed attempt that will be retried, fenced by its token: the attempt is spent,
-- and the job goes back to the queue now (ms = 0) or to sched, due `ms` from now.
-- ARGV: id, token, ms, error (the last error, kept for `mpqctl job` until it ends).
-- KEYS[NKEYS + 1]: done:<id>. A job with a cancel request (cancel.lua) ends as
-- cancelled instead. Returns 1, 0 when the token no longer owns the job (stale
-- worker), or what the cancel request asked ('ask' or 'kill').
local id, token, ms = ARGV[1], ARGV[2], tonumber(ARGV[3])
local env, reply = settle_start(id, token, KEYS[NKEYS + 1])
if not env then return reply end
redis.call('HSET', KEYS[ERRORS], id, ARGV[4])
if ms > 0 then
  if schedule(env, now_ms() + ms) then wake() end
else
  local _, _, prio = parse(env)
  if enqueue(env, tonumber(prio or '0'), false) then wake() end
end
return 1
