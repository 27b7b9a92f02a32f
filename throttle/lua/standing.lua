-- standing.lua: what an id's aux hash says now, for status views: how long
-- its pause has left and the rate it runs at while it climbs back from its
-- upstream's refusals (see learned_rate in common.lua). Appended to
-- common.lua. It writes nothing.
--
-- KEYS[1] -> the id's aux hash   KEYS[2] -> the id's policy hash
-- ARGV[1] -> the default policy's interval, ns (for an id without a policy)
-- Returns {pause left µs (0: none), learned rate in thousandths per second
-- (-1: running at its policy's), µs until back at its policy's rate,
-- bookings not redeemed yet (tickets)}.

local now = now_us()
local v = redis.call('HMGET', KEYS[1], 'h', 'lr', 'lc', 'lv', 'n')
local booked = math.max(0, tonumber(v[5]) or 0)
local hold = math.max(0, (tonumber(v[1]) or 0) - now)
local t = tonumber(redis.call('HGET', KEYS[2], 't')) or tonumber(ARGV[1])
local lr, lc, lv = tonumber(v[2]), tonumber(v[3]), tonumber(v[4]) or 60000000
if not lr then return {hold, -1, 0, booked} end
local full = 1e9 / t
local rate = learned_rate(t, lr, lc, now, lv)
if rate >= full then return {hold, -1, 0, booked} end
return {hold, math.floor(rate * 1000), math.ceil(lc + (full - lr) * lv / full - now), booked}
