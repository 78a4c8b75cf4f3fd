-- KEYS: paused
-- Pause the queue: from now on reserve.lua reserves nothing of it and pushes hand
-- nothing to its idle consumers; running jobs go on and are acked as usual.
-- Returns 1 if it ran until now, 0 if it was paused already.
if redis.call('SET', KEYS[PAUSED], '1', 'NX') then return 1 end
return 0
