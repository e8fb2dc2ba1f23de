-- Members of an index by Redis's clock (score = expiry in ms). Read-only.
-- KEYS: 1 members index. ARGV: 1 "" for the live members (expiry ahead), or a grace in
-- ms for those whose expiry passed more than that long ago (gone, not yet pruned).
-- Returns {now ms, {ids...}}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ids
if ARGV[1] == '' then
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
else
  local limit = string.format('%.0f', now - tonumber(ARGV[1]))
  ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. limit)
end
return {now, ids}
