-- retime.lua: moves a tenant's tasks that wait in the scheduled set for a
-- booked slot (recorded by requeue.lua) to their slot's new due time, when
-- the limiter moved the slot (a pause, a slower rate learned from the
-- upstream), so that they come back then instead of early. A task that is
-- no longer scheduled as Requeue left it is dropped from the zset.
--
-- KEYS[1] -> asynq:{<queue>}:quotaq:booked:<tenant>  (zset: id -> due ms)
-- KEYS[2] -> asynq:{<queue>}:scheduled   (zset)
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2], ARGV[3], ... -> pairs of task id, new due time (unix ms)
-- Returns the ids moved.

local moved = {}
for i = 2, #ARGV, 2 do
  local id, due = ARGV[i], tonumber(ARGV[i + 1])
  local key = ARGV[1] .. id
  local was = tonumber(redis.call("ZSCORE", KEYS[1], id))
  if was then
    if tonumber(redis.call("HGET", key, "quotaq_due")) ~= was or redis.call("HGET", key, "state") ~= "scheduled" then
      redis.call("ZREM", KEYS[1], id)
    elseif due ~= was then
      redis.call("HSET", key, "quotaq_due", string.format("%d", due))
      redis.call("ZADD", KEYS[2], math.ceil(due / 1000), id)
      redis.call("ZADD", KEYS[1], due, id)
      moved[#moved + 1] = id
    end
  end
end
return moved
