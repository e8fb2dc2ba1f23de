-- Put one row: check the precondition, take the next version, write, log. Atomic.
-- KEYS: 1 rows hash, 2 version counter, 3 ttl zset, 4 events stream
-- ARGV: 1 id, 2 encoded values, 3 mode ("" any, "match", "create"), 4 expected version,
--       5 ttl ms ("0" none, "-1" keep the current expiry), 6 tenant, 7 entity,
--       8 log maxlen, 9 ttl member
-- Returns {1, version, stream id} or {0, current version or ""} when the precondition fails.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
local curver, curexp, hadttl = false, 0, false
if cur then
  local v, x = string.match(cur, '^(%d+):(%d+):')
  x = tonumber(x)
  hadttl = x > 0
  if x == 0 or x > now_ms then curver, curexp = v, x end
end
if ARGV[3] == 'match' and curver ~= ARGV[4] then return {0, curver or ''} end
if ARGV[3] == 'create' and curver then return {0, curver} end
local ver = tonumber(redis.call('GET', KEYS[2]) or '0')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local vs = string.format('%.0f', math.max(ver + 1, now_us))
redis.call('SET', KEYS[2], vs)
local ttl = tonumber(ARGV[5])
local exp = 0
if ttl > 0 then exp = now_ms + ttl elseif ttl < 0 then exp = curexp end
redis.call('HSET', KEYS[1], ARGV[1], vs .. ':' .. string.format('%.0f', exp) .. ':' .. ARGV[2])
if exp > 0 then
  redis.call('ZADD', KEYS[3], exp, ARGV[9])
elseif hadttl then
  redis.call('ZREM', KEYS[3], ARGV[9])
end
local sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
  't', ARGV[6], 'e', ARGV[7], 'i', ARGV[1], 'v', vs, 'o', 'p', 'd', ARGV[2])
return {1, vs, sid}
