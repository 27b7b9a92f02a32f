-- release.lua: brings a tenant's parked tasks of one queue (re-queued to
-- wait for nothing booked: a quota, a pause, an outage) back to the tail
-- of the pending list now, as asynq's forwarder would at their due time,
-- but only each that is still the scheduled task Requeue left (its
-- "quotaq_due" matches its score here): one run by hand, deleted, or
-- re-queued again since is left alone. Each is taken out of the zset.
-- Appended to move.lua.
--
-- KEYS[1] -> asynq:{<queue>}:quotaq:parked:<tenant>  (zset: id -> due ms)
-- KEYS[2] -> asynq:{<queue>}:scheduled   (zset)
-- KEYS[3] -> asynq:{<queue>}:pending     (list; asynq dequeues from the right)
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> now, unix ns ("pending_since", as asynq's forwarder writes)
-- ARGV[3] -> the most tasks to look at in this run
-- Returns {moved, left}: tasks moved, and entries still in the zset.

local moved = 0
local batch = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[3]) - 1, "WITHSCORES")
for i = 1, #batch, 2 do
  redis.call("ZREM", KEYS[1], batch[i])
  if move(ARGV[1], KEYS[2], KEYS[3], batch[i], batch[i + 1], ARGV[2], false) then moved = moved + 1 end
end
return {moved, redis.call("ZCARD", KEYS[1])}
