-- Where a one-shot query answered from memory stands: the end of the partition's log,
-- Redis time in ms, and the rows of one collection that have expired by then but are
-- still stored (the owner deletes them within seconds), as one atomic read.
-- KEYS: 1 events stream, 2 ttl zset, 3 the collection's rows hash.
-- ARGV: 1 log maxlen, 2 the ttl member prefix of the collection (tenant \0 entity \0),
--       3 at most this many due members (of any collection of the partition) looked at.
-- Returns {end id, now ms, 1 if more members were due than ARGV[3] else 0,
--          id, version, id, version, ...} (versions as stored, expired by now).
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id
if #last == 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'o', 'n')
else
  id = last[1][1]
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local most = tonumber(ARGV[3])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, most + 1)
local out = {id, now, 0}
if #due > most then
  out[3] = 1
  return out
end
local prefix = ARGV[2]
for _, m in ipairs(due) do
  if string.sub(m, 1, #prefix) == prefix then
    local rid = string.sub(m, #prefix + 1)
    local raw = redis.call('HGET', KEYS[3], rid)
    if raw then
      local v, x = string.match(raw, '^(%d+):(%d+):')
      if tonumber(x) > 0 and tonumber(x) <= now then
        out[#out + 1] = rid
        out[#out + 1] = v
      end
    end
  end
end
return out
