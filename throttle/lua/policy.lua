-- policy.lua: set or delete one tenant's own policy. Appended to
-- dropcache.lua.
--
-- KEYS[1] -> the tenant's policy hash
-- KEYS[2] -> the tenant's token bucket state, whose cached policy is dropped
-- ARGV    -> the policy hash's fields and values; none: delete the policy
-- Returns 1.

redis.call('DEL', KEYS[1])
if #ARGV > 0 then redis.call('HSET', KEYS[1], unpack(ARGV)) end
drop_cache(KEYS[2])
return 1
