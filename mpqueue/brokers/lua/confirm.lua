-- A consumer confirms that it took a job handed to it by a push (see hand_off in
-- _keys.lua), as it takes the job: from now on the reservation is an ordinary one,
-- with the consumer's own lease, whose loss spends an attempt. Standalone (no
-- _keys.lua prelude): KEYS[1] = the queue's held hash, KEYS[2] = its leases
-- (KEYS[13] and KEYS[14] of the data model). ARGV: id, token, lease_ms.
-- Returns 1, or 0 if the token does not hold the job.
local id, token = ARGV[1], ARGV[2]
local held = redis.call('HGET', KEYS[1], id)
if not held then return 0 end
local t, consumer, env = string.match(held, '^(%S+) (%S+) (.*)$')
if t ~= token then return 0 end
if string.sub(consumer, -1) == '+' then
  redis.call('HSET', KEYS[1], id, t .. ' ' .. string.sub(consumer, 1, -2) .. ' ' .. env)
  local now = redis.call('TIME')
  redis.call('ZADD', KEYS[2], tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[3]), id)
end
return 1
