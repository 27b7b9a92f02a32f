-- policy.lua: set or delete one tenant's own policy. A change script (see
-- tokenbucket.lua).
--
-- A new rate re-spaces the tenant's bookings: every ticket due later than
-- now moves to now + its wait times the new interval over the old one (the
-- interval the bucket's bookings were priced at), so that the jobs booked
-- under the old rate come at the new one (the bucket's backlog is repriced
-- alike at its next decision). A caller that parked jobs at their tickets'
-- times moves them too (Limiter.TicketDues).
--
-- KEYS[1] -> the tenant's token bucket state
-- KEYS[2] -> the tenant's policy hash
-- KEYS[3] -> the tenant's aux hash (tickets)
-- ARGV[1] -> the default policy's interval, ns (the new one when deleting;
--            0: unknown, bookings stay where they are)
-- ARGV[2..] -> the policy hash's fields and values; none: delete the policy
-- Returns 1.

local now = now_us()
local L = {sk = KEYS[1], pk = KEYS[2], ak = KEYS[3]}
local new_t = tonumber(ARGV[1])
for i = 2, #ARGV - 1, 2 do
  if ARGV[i] == 't' then new_t = tonumber(ARGV[i + 1]) end
end
algo.read(L, {new_t, 1, 0, 0}, now)
local old_t = L.was or tonumber(redis.call('HGET', L.pk, 't')) or tonumber(ARGV[1])

redis.call('DEL', L.pk)
if #ARGV > 1 then redis.call('HSET', L.pk, unpack(ARGV, 2)) end

if new_t > 0 and old_t > 0 and new_t ~= old_t and redis.call('EXISTS', L.ak) == 1 then
  local r = new_t / old_t
  local last = tickets_move(L, function(due)
    if due > now then due = now + math.ceil((due - now) * r) end
    return due
  end)
  aux_extend(L, math.max(last, now), now)
end
return 1
