-- ticket.lua: record a ticket as booked and already due on one id (an id
-- that admitted at once while another id of the same decision booked, on a
-- Cluster where one script cannot see both). Appended to dropcache.lua.
--
-- KEYS[1] -> the id's aux hash   KEYS[2] -> the id's token bucket state
-- ARGV[1] -> the ticket          ARGV[2] -> keep the aux hash at least this long, ms
-- Returns 1.

if redis.call('HSET', KEYS[1], 'k:' .. ARGV[1], '0') == 1 then redis.call('HINCRBY', KEYS[1], 'n', 1) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
drop_cache(KEYS[2])
return 1
