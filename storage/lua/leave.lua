-- A member leaves at once instead of at its TTL. Atomic; every key is in the {m} slot.
-- KEYS: 1 liveness key, 2 members index, 3 changes stream
-- ARGV: 1 member id, 2 kind, 3 "1" to append a leave notice, 4 changes maxlen
-- The notice is appended even when the member was already gone, so a second call (a
-- shard's notice after releasing its leases) still wakes the others.
-- Returns 1 if the member was in the index, else 0.
local was = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
if ARGV[3] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*',
    'op', 'leave', 'id', ARGV[1], 'kind', ARGV[2])
end
return was
