-- How many members of the membership index are live, by Redis's own clock.
-- KEYS: 1 members sorted set (score = expiry, Redis time in ms). Returns the count.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
