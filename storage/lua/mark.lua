-- The current end of a partition's log, Redis time in ms, and the version the last entry
-- logged ("0" for a no-op marker), as one atomic read.
-- KEYS: 1 events stream. ARGV: 1 log maxlen.
-- An empty log gets a no-op entry first, so a position is always a real entry id and a
-- trimmed position can be told by that entry being gone.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id
local v = '0'
if #last == 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'o', 'n')
else
  id = last[1][1]
  local f = last[1][2]
  for i = 1, #f, 2 do
    if f[i] == 'v' then v = f[i + 1] end
  end
end
local t = redis.call('TIME')
return {id, tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), v}
