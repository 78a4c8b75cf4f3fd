-- KEYS: failed watch + done:<id>
-- A caller starts waiting for one job's end (Client.result), already subscribed
-- to "<watch>:<id>": from now on the script that ends the job publishes there
-- (finished() in _keys.lua). Also drops watches past their expiry.
-- ARGV: id, ttl_ms (the waiter refreshes before then). KEYS[NKEYS + 1]: done:<id>.
-- Returns {} while the job has not ended, else {state, record}: 'done' with the
-- done record (a cancelled job's too), or 'failed' with "<envelope>\n<error>".
local id, ttl = ARGV[1], tonumber(ARGV[2])
-- A job that has ended already is not watched: nothing would ever remove its entry
-- (finished() removes the entries of jobs that end later).
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[WATCH], '-inf', now)
local done = redis.call('GET', KEYS[NKEYS + 1])
if done then
  redis.call('ZREM', KEYS[WATCH], id)
  return {'done', done}
end
local failed = redis.call('HGET', KEYS[FAILED], id)
if failed then
  redis.call('ZREM', KEYS[WATCH], id)
  return {'failed', failed}
end
redis.call('ZADD', KEYS[WATCH], now + ttl, id)
return {}
