-- wake.lua: moves re-queued tasks whose due time has come from asynq's
-- scheduled set to the head of the pending list, as asynq's forwarder would,
-- but only if each is still the scheduled task Requeue left (its "quotaq_due"
-- matches): a task that was run by hand, deleted, or re-queued again since is
-- left alone.
--
-- KEYS[1] -> asynq:{<queue>}:scheduled   (zset)
-- KEYS[2] -> asynq:{<queue>}:pending     (list; asynq dequeues from the right)
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> now, unix ns ("pending_since", as asynq's forwarder writes)
-- ARGV[3], ARGV[4], ... -> pairs of task id, due time (unix ms, as given to requeue.lua)
-- Returns the number of tasks moved.

local moved = 0
for i = 3, #ARGV, 2 do
  local id, due = ARGV[i], ARGV[i + 1]
  local key = ARGV[1] .. id
  if redis.call("HGET", key, "quotaq_due") == due and redis.call("HGET", key, "state") == "scheduled"
      and redis.call("ZREM", KEYS[1], id) == 1 then
    redis.call("RPUSH", KEYS[2], id)
    redis.call("HSET", key, "state", "pending", "pending_since", ARGV[2])
    moved = moved + 1
  end
end
return moved
