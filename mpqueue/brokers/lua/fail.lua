-- KEYS: ready:* pmax held leases stats failed errors wake failed_at watch cancels ids where + done:<id>
-- Move a reserved job to the failed store, fenced by its token.
-- ARGV: id, token, error, hook_envelope: the failure-hook job, or '' for none,
-- enqueued (priority 9) in the same step so the hook can't be lost.
-- KEYS[NKEYS + 1]: done:<id>. A job with a cancel request ends as cancelled instead
-- (no failure hook). Returns 1, 0 when the token no longer owns the job, or what
-- the cancel request asked ('ask' or 'kill').
local id, token, record, hook = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local env, reply = settle_start(id, token, KEYS[NKEYS + 1])
if not env then return reply end
redis.call('HSET', KEYS[FAILED], id, env .. '\n' .. record)
redis.call('ZADD', KEYS[FAILED_AT], now_ms(), id)
redis.call('HINCRBY', KEYS[STATS], 'failed', 1)
redis.call('HDEL', KEYS[ERRORS], id)
if hook ~= '' and enqueue(hook, 9, false) then wake() end
finished(id, 'failed', env .. '\n' .. record)
return 1
