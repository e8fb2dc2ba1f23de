-- Take a partition's lease, only when it is free, under a new fencing epoch. Atomic.
-- KEYS: 1 lease, 2 epoch counter. ARGV: 1 shard id, 2 ttl ms.
-- The epoch is max(counter + 1, Redis time in µs), so it grows across holders and even
-- across a Redis crash that lost the counter's last increments; the lease value
-- `<shard>:<epoch>` names the holder. Returns the epoch as a string, or false when held.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
local es = string.format('%.0f', math.max(cur + 1, now_us))
redis.call('SET', KEYS[2], es)
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. es, 'PX', ARGV[2])
return es
