-- policy.lua: set or delete one tenant's own policy. Appended to
-- dropcache.lua.
--
-- A new rate re-spaces the tenant's bookings: every ticket due later than
-- now moves to now + its wait times the new interval over the old one (the
-- interval the bucket's bookings were priced at), so that the jobs booked
-- under the old rate come at the new one (the bucket's backlog is repriced
-- alike at its next decision). A caller that parked jobs at their tickets'
-- times moves them too (Limiter.TicketDues).
--
-- KEYS[1] -> the tenant's policy hash
-- KEYS[2] -> the tenant's token bucket state, whose cached policy is dropped
-- KEYS[3] -> the tenant's aux hash (tickets)
-- ARGV[1] -> the default policy's interval, ns (the new one when deleting;
--            0: unknown, bookings stay where they are)
-- ARGV[2..] -> the policy hash's fields and values; none: delete the policy
-- Returns 1.

local now = now_us()
local new_t = tonumber(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  if ARGV[i] == 't' then new_t = tonumber(ARGV[i + 1]) end
end
local v = redis.call('GET', KEYS[2])
local old_t = v and tonumber(string.match(v, '^%d+:%d+:(%d+)'))
if not old_t then old_t = tonumber(redis.call('HGET', KEYS[1], 't')) or tonumber(ARGV[1]) end

redis.call('DEL', KEYS[1])
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end
drop_cache(KEYS[2])

if new_t > 0 and old_t > 0 and new_t ~= old_t and redis.call('EXISTS', KEYS[3]) == 1 then
  local r = new_t / old_t
  local last = tickets_move(KEYS[3], function(due)
    if due > now then due = now + math.ceil((due - now) * r) end
    return due
  end)
  aux_extend(KEYS[3], math.max(last, now), now)
end
return 1
