-- Redis time in ms, on the node that holds KEYS[1].
local t = redis.call('TIME')
return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
