-- Delete one row: precondition, next version, remove, log. Atomic.
-- KEYS: 1 rows hash, 2 version counter, 3 ttl zset, 4 events stream
-- ARGV: 1 id, 2 mode ("" any, "match", "expire"), 3 expected version ("" any),
--       4 tenant, 5 entity, 6 log maxlen, 7 ttl member
-- "expire" deletes only a row whose expiry has passed (and, if given, whose version is
-- the expected one): the owner's TTL sweep, so a row re-written meanwhile survives.
-- Returns {1, version, stream id}, {0, current version or ""} on a failed precondition,
-- or {-1} when the row is absent.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then
  if ARGV[2] == 'expire' then redis.call('ZREM', KEYS[3], ARGV[7]) end
  return {-1}
end
local curver, x = string.match(cur, '^(%d+):(%d+):')
x = tonumber(x)
local expired = x > 0 and x <= now_ms
if ARGV[2] == 'expire' then
  if not expired or (ARGV[3] ~= '' and curver ~= ARGV[3]) then return {0, curver} end
else
  if expired then return {-1} end
  if ARGV[2] == 'match' and curver ~= ARGV[3] then return {0, curver} end
end
local ver = tonumber(redis.call('GET', KEYS[2]) or '0')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local vs = string.format('%.0f', math.max(ver + 1, now_us))
redis.call('SET', KEYS[2], vs)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[7])
local sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
  't', ARGV[4], 'e', ARGV[5], 'i', ARGV[1], 'v', vs, 'o', 'd')
return {1, vs, sid}
