-- KEYS: stats history
-- A queue's throughput history (Broker.record_history): its totals now, as the
-- point of the interval holding now, replacing an earlier point of that interval
-- (every node of the service writes it: the latest totals win); points older than
-- the kept window go in the same step, and the key expires a window after its last
-- write, so a queue nobody serves any more leaves nothing behind.
-- ARGV: every_ms, keep_ms, now_ms ("" for the broker's clock). Returns now_ms.
local now = tonumber(ARGV[3]) or now_ms()
local every, keep = tonumber(ARGV[1]), tonumber(ARGV[2])
local at = now - now % every
local totals = redis.call('HMGET', KEYS[STATS], 'done', 'failed')
redis.call('ZREMRANGEBYSCORE', KEYS[HISTORY], at, at)
redis.call('ZADD', KEYS[HISTORY], at, string.format('%d %d %d', at, tonumber(totals[1] or '0'), tonumber(totals[2] or '0')))
redis.call('ZREMRANGEBYSCORE', KEYS[HISTORY], '-inf', '(' .. string.format('%d', now - keep))
redis.call('PEXPIRE', KEYS[HISTORY], keep)
return now
