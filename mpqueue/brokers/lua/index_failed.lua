-- KEYS: failed failed_at
-- Bring the failed store's order index (failed_at) in step with the failed HASH,
-- for entries written by a version without the index (an upgrade, or an old node
-- during a rolling one). ARGV: ids, from either key. An id in the HASH without an
-- index entry gets one, scored by its error's "at" (epoch s -> ms); an index entry
-- whose failure is gone is dropped. Returns how many entries were changed.
local changed = 0
for _, id in ipairs(ARGV) do
  local rec = redis.call('HGET', KEYS[FAILED], id)
  local indexed = redis.call('ZSCORE', KEYS[FAILED_AT], id)
  if rec and not indexed then
    local ok, err = pcall(cjson.decode, string.match(rec, '\n(.*)$') or '')
    local at = ok and type(err) == 'table' and tonumber(err.at) or 0
    redis.call('ZADD', KEYS[FAILED_AT], math.floor(at * 1000), id)
    changed = changed + 1
  elseif indexed and not rec then
    redis.call('ZREM', KEYS[FAILED_AT], id)
    changed = changed + 1
  end
end
return changed
