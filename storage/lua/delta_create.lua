-- Create (or keep) a gateway's delta stream and set its expiry. Atomic.
-- KEYS: 1 delta stream. ARGV: 1 ttl seconds, 2 maxlen.
-- An absent stream gets a marker entry, so the returned position (the stream's last
-- id) is always a real entry and a trimmed position can be told by its entry being gone.
-- Returns the position to read from.
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id
if #last == 0 then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'mark', '1')
else
  id = last[1][1]
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return id
