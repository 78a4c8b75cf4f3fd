-- KEYS: wake paused
-- Resume a paused queue, and wake its idle consumers in the same step, so the jobs
-- that waited start now rather than at the consumers' fallback re-check.
-- Returns 1 if it was paused, 0 if it was running already (no wake-up then).
if redis.call('DEL', KEYS[PAUSED]) == 0 then return 0 end
wake()
return 1
