-- hold.lua: pause an id (its upstream answered 429 or 503 with Retry-After):
-- every decision that involves it waits until the pause ends. Appended to
-- common.lua.
--
-- KEYS[1] -> aux hash of the id      KEYS[2] -> the id's hold counter
-- ARGV[1] -> pause length, µs (> 0)
-- Returns the number of holds the id has had, this one included.

local now = now_us()
local untl = now + tonumber(ARGV[1])
local cur = redis.call('HGET', KEYS[1], 'h')
if not cur or tonumber(cur) < untl then
  redis.call('HSET', KEYS[1], 'h', fmt(untl))
  aux_extend(KEYS[1], untl, now)
end
return redis.call('INCR', KEYS[2])
