-- The current end of a partition's log and Redis time in ms, as one atomic read.
-- KEYS: 1 events stream. ARGV: 1 log maxlen.
-- An empty log gets a no-op entry first, so a position is always a real entry id and a
-- trimmed position can be told by that entry being gone.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id
if #last == 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'o', 'n')
else
  id = last[1][1]
end
local t = redis.call('TIME')
return {id, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}
