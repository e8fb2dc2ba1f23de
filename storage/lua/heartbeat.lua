-- Heartbeat of a shard or gateway on Redis's clock. Atomic; every key is in the {m} slot.
-- KEYS: 1 liveness key, 2 members index (zset), 3 changes stream
-- ARGV: 1 member id, 2 ttl ms, 3 value (the process's counters), 4 kind,
--       5 "1" to append a join notice on a (re)join, 6 prune window ms, 7 changes maxlen
-- A (re)join is a member absent from the index or whose score (its expiry) has passed.
-- Members expired longer than the prune window ago are removed from the index.
-- Returns {now ms, 1 if (re)joined else 0}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
local joined = (not score) or tonumber(score) <= now
redis.call('SET', KEYS[1], ARGV[3], 'PX', ttl)
redis.call('ZADD', KEYS[2], string.format('%.0f', now + ttl), ARGV[1])
if joined and ARGV[5] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[7], '*',
    'op', 'join', 'id', ARGV[1], 'kind', ARGV[4])
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf',
  '(' .. string.format('%.0f', now - tonumber(ARGV[6])))
return {now, joined and 1 or 0}
