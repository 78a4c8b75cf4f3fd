-- KEYS: ready:* pmax failed wake failed_at ids where
-- Move failed jobs back to the queue with a fresh attempt count (`mpqctl retry`).
-- ARGV: ids. Returns how many were moved.
local moved, need_wake = 0, false
for _, id in ipairs(ARGV) do
  local rec = redis.call('HGET', KEYS[FAILED], id)
  if rec then
    local env = string.match(rec, '^([^\n]*)')
    local jid, _, prio, body = parse(env)
    if jid then
      if not (#jid == 16 and string.match(jid, '^[0-9a-f]+$')) then
        redis.call('HSET', KEYS[IDS], jid, '1')      -- a caller's id: live again
      end
      if enqueue(jid .. ' 0 ' .. prio .. ' ' .. body, tonumber(prio), false) then need_wake = true end
      redis.call('HDEL', KEYS[FAILED], id)
      redis.call('ZREM', KEYS[FAILED_AT], id)
      moved = moved + 1
    end
  end
end
if need_wake then wake() end
return moved
