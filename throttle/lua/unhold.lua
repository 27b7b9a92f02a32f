-- unhold.lua: an operator lifts an id's pause now and forgets the rate it
-- learned from its upstream's refusals: it runs at its policy's rate again.
-- Bookings keep their due times (a pause moved them back as it grew; they
-- now run in turn from there). A change script (see tokenbucket.lua).
--
-- KEYS[1] -> the id's token bucket state ("tb")   KEYS[2] -> its aux hash
-- Returns 1 when the id had a pause in force or a learned rate, else 0.

local now = now_us()
local v = redis.call('HMGET', KEYS[2], 'h', 'lr')
local had = 0
if (tonumber(v[1]) or 0) > now or v[2] then had = 1 end
redis.call('HDEL', KEYS[2], 'h', 'lr', 'lc', 'lv')
return had
