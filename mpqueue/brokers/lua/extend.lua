-- KEYS: held leases
-- Lengthen the lease of one reserved job (a task whose timeout is longer than its
-- queue's), fenced by its token. ARGV: id, token, lease_ms: the lease now ends
-- lease_ms from now. Returns 1, or 0 when the token no longer owns the job.
-- Runner.begin sends it without waiting for the reply (RedisBroker.extend_soon):
-- if it is lost, the job keeps the lease its reservation gave it.
local id, token = ARGV[1], ARGV[2]
local held = redis.call('HGET', KEYS[HELD], id)
if not held or string.match(held, '^(%S+)') ~= token then return 0 end
redis.call('ZADD', KEYS[LEASES], now_ms() + tonumber(ARGV[3]), id)
return 1
