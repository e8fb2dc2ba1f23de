-- Give a lease up, only while it still holds the caller's whole `<shard>:<epoch>` value.
-- KEYS: 1 lease. ARGV: 1 value. Returns 1 if released, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
