-- Drop every waiting job (ready and scheduled) of the queue; running jobs stay.
-- Returns how many were dropped.
local n = redis.call('ZCARD', KEYS[SCHED])
for p = 1, 10 do n = n + redis.call('LLEN', KEYS[p]) end
for p = 1, 10 do redis.call('DEL', KEYS[p]) end
redis.call('DEL', KEYS[PMAX], KEYS[SCHED])
-- caller-chosen ids stay taken only by running jobs now
for _, id in ipairs(redis.call('HKEYS', KEYS[IDS])) do
  if redis.call('HEXISTS', KEYS[HELD], id) == 0 then redis.call('HDEL', KEYS[IDS], id) end
end
return n
