-- KEYS: ready:* pmax sched held stats ids where dead
-- Drop every waiting job (ready and scheduled) of the queue; running jobs stay.
-- Returns how many were dropped (cancelled envelopes still listed are not jobs).
-- UNLINK: the keys' memory is freed off the server's main thread.
local n = redis.call('ZCARD', KEYS[SCHED]) - dead_total()
for p = 0, 9 do n = n + redis.call('LLEN', KEYS[READY + p]) end
redis.call('UNLINK', KEYS[PMAX], KEYS[SCHED], KEYS[WHERE], KEYS[DEAD], unpack(KEYS, READY, READY + 9))
redis.call('HDEL', KEYS[STATS], 'dead')
-- caller-chosen ids stay taken only by running jobs now
for _, id in ipairs(redis.call('HKEYS', KEYS[IDS])) do
  if redis.call('HEXISTS', KEYS[HELD], id) == 0 then redis.call('HDEL', KEYS[IDS], id) end
end
return n
