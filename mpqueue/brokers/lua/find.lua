-- KEYS: ready:* sched held stats failed errors where + done:<id>
-- Where one job is (Client.status and result, `mpqctl job`, the dashboard), read in
-- one step, so a job moving meanwhile is seen in one place, never in none; O(1) at
-- any depth (the index KEYS[WHERE] instead of a scan of the ready lists).
-- ARGV: id. KEYS[NKEYS + 1]: done:<id>.
-- Returns {'running', held record} | {'done', done record} | {'failed', "<envelope>\n<error>"}
-- | {'ready', envelope, last error or ''} | {'scheduled', envelope, last error or '', due ms}
-- | {'none', covered}: covered is 1 when the index holds every waiting job of the queue
-- (the answer is exact), 0 when some were pushed by a release without the index: then
-- the caller scans for the job (redis_inspection.py), as before the index.
local id = ARGV[1]
local held = redis.call('HGET', KEYS[HELD], id)
if held then return {'running', held} end
local done = redis.call('GET', KEYS[NKEYS + 1])
if done then return {'done', done} end
local failed = redis.call('HGET', KEYS[FAILED], id)
if failed then return {'failed', failed} end
local where = redis.call('HGET', KEYS[WHERE], id)
if where then
  local listed = string.sub(where, 3)
  local last_error = redis.call('HGET', KEYS[ERRORS], id) or ''
  if string.sub(where, 1, 1) == 'r' then return {'ready', listed, last_error} end
  local due = redis.call('ZSCORE', KEYS[SCHED], listed)
  if due then return {'scheduled', listed, last_error, due} end
  -- not there: an entry an older node left behind when it moved the job (a rolling
  -- upgrade); the coverage check below then sends the caller to the scan
end
local waiting = redis.call('ZCARD', KEYS[SCHED]) - dead_total()
for p = 0, 9 do waiting = waiting + redis.call('LLEN', KEYS[READY + p]) end
if redis.call('HLEN', KEYS[WHERE]) == waiting then return {'none', 1} end
return {'none', 0}
