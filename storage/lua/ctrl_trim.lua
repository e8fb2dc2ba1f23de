-- Trim a control stream without losing anything unacknowledged. Atomic.
-- KEYS: 1 control stream. ARGV: 1 consumer group.
-- Keeps every entry from the oldest pending one on; with none pending, keeps only what
-- the group has not been delivered yet (ids above its last-delivered-id).
-- Returns how many entries were removed.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1])
local minid
if tonumber(pending[1]) > 0 then
  minid = pending[2]
else
  local last
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
    if info['name'] == ARGV[1] then last = info['last-delivered-id'] end
  end
  if not last then return 0 end
  local ms, seq = string.match(last, '^(%d+)-(%d+)$')
  minid = ms .. '-' .. string.format('%.0f', tonumber(seq) + 1)
end
return redis.call('XTRIM', KEYS[1], 'MINID', minid)
