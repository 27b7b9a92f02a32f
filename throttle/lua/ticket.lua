-- ticket.lua: record a ticket as booked and already due on one id (an id
-- that admitted at once while another id of the same decision booked, on a
-- Cluster where one script cannot see both). A change script (see
-- tokenbucket.lua).
--
-- KEYS[1] -> the id's token bucket state   KEYS[2] -> the id's aux hash
-- ARGV[1] -> the ticket   ARGV[2] -> keep the aux hash at least this long, ms
-- Returns 1.

local L = {ak = KEYS[2]}
ticket_set(L, ARGV[1], 0, now_us())
if redis.call('PTTL', L.ak) < tonumber(ARGV[2]) then redis.call('PEXPIRE', L.ak, ARGV[2]) end
return 1
