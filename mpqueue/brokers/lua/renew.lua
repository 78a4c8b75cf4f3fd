-- KEYS: held leases
-- Renew the leases of every job held by the given live consumers: their node is
-- alive, so a lease must not end however long a job or a prefetched batch takes,
-- nor because the clock stepped forward less than the lease.
-- ARGV: lease_ms, consumer1, consumer2, ... Returns how many leases were renewed.
-- A lease is never shortened (a task with a longer timeout than its queue's has one
-- sized for it). One script per queue per interval, whatever the number of jobs.
local deadline = now_ms() + tonumber(ARGV[1])
local live = {}
for i = 2, #ARGV do live[ARGV[i]] = true end
local held = redis.call('HGETALL', KEYS[HELD])
local renewed = 0
for i = 1, #held, 2 do
  local consumer = string.match(held[i + 1], '^%S+ (%S+) ')
  if string.sub(consumer, -1) == '+' then consumer = string.sub(consumer, 1, -2) end  -- unconfirmed hand-off
  if live[consumer] then
    local current = tonumber(redis.call('ZSCORE', KEYS[LEASES], held[i]) or '0')
    if deadline > current then redis.call('ZADD', KEYS[LEASES], deadline, held[i]) end
    renewed = renewed + 1
  end
end
return renewed
