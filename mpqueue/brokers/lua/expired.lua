-- KEYS: held leases watch
-- Reservations whose lease has ended (their node is presumed dead), on the broker's clock.
-- ARGV: limit. Returns {id1, held_record1, id2, ...}; the caller settles each,
-- fenced by the token in the record, so a racing recovery settles it once.
-- Also drops the queue's lapsed watches (KEYS[WATCH]: callers that stopped waiting
-- before their job ended), so they go within a recovery interval even if nobody
-- calls result() again.
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', KEYS[WATCH], '-inf', now)
local ids = redis.call('ZRANGEBYSCORE', KEYS[LEASES], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local out = {}
for _, id in ipairs(ids) do
  local held = redis.call('HGET', KEYS[HELD], id)
  if held then
    out[#out + 1] = id
    out[#out + 1] = held
  else
    redis.call('ZREM', KEYS[LEASES], id)
  end
end
return out
