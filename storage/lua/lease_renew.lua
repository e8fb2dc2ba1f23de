-- Extend a lease, only while it still holds the caller's whole `<shard>:<epoch>` value.
-- KEYS: 1 lease. ARGV: 1 value, 2 ttl ms. Returns 1 if renewed, else 0.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
