-- KEYS: held leases
-- A consumer confirms that it took a job handed to it by a push (see hand_off in
-- _keys.lua), as it takes the job: from now on the reservation is an ordinary one,
-- with the consumer's own lease, whose loss spends an attempt.
-- ARGV: id, token, lease_ms. Returns 1, or 0 if the token does not hold the job.
local id, token = ARGV[1], ARGV[2]
local held = redis.call('HGET', KEYS[HELD], id)
if not held then return 0 end
local t, consumer, env = string.match(held, '^(%S+) (%S+) (.*)$')
if t ~= token then return 0 end
if string.sub(consumer, -1) == '+' then
  redis.call('HSET', KEYS[HELD], id, t .. ' ' .. string.sub(consumer, 1, -2) .. ' ' .. env)
  redis.call('ZADD', KEYS[LEASES], now_ms() + tonumber(ARGV[3]), id)
end
return 1
