-- KEYS: ready:* pmax stats
-- How many jobs are ready now (every priority list at or below pmax). Cheap
-- enough for the supervisor's STATUS line.
-- Cancelled envelopes still listed (KEYS[DEAD]) are not ready jobs.
local n = -dead_total()
for p = 0, tonumber(redis.call('GET', KEYS[PMAX]) or '0') do n = n + redis.call('LLEN', KEYS[READY + p]) end
return n
