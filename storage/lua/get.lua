-- Read one row, hiding it when its expiry (Redis time) has passed.
-- KEYS: 1 rows hash. ARGV: 1 id. Returns the stored value or false.
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return false end
local x = tonumber(string.match(cur, '^%d+:(%d+):'))
if x > 0 then
  local t = redis.call('TIME')
  if x <= tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) then return false end
end
return cur
