-- A queue's throughput history (Broker.record_history): its totals now, as the
-- point of the interval holding now, replacing an earlier point of that interval
-- (every node of the service writes it: the latest totals win); points older than
-- the kept window go in the same step, and the key expires a window after its last
-- write, so a queue nobody serves any more leaves nothing behind.
-- Standalone (no _keys.lua prelude): KEYS[1] = the queue's stats hash (KEYS[15]
-- of the data model), KEYS[2] = its history, "mpq:{<queue>}:history", a ZSET of
-- "<interval start ms> <done_total> <failed_total>" scored by the interval's start.
-- ARGV: every_ms, keep_ms, now_ms ("" for the broker's clock). Returns now_ms.
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local every, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = now - now % every
local totals = redis.call('HMGET', KEYS[1], 'done', 'failed')
redis.call('ZREMRANGEBYSCORE', KEYS[2], at, at)
redis.call('ZADD', KEYS[2], at, string.format('%d %d %d', at, tonumber(totals[1] or '0'), tonumber(totals[2] or '0')))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - keep))
redis.call('PEXPIRE', KEYS[2], keep)
return now
