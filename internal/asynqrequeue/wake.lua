-- wake.lua: moves re-queued tasks whose due time has come from asynq's
-- scheduled set to the head of the pending list, as asynq's forwarder would,
-- but only if each is still the scheduled task Requeue left (its "quotaq_due"
-- matches): a task that was run by hand, deleted, or re-queued again since is
-- left alone. Appended to move.lua.
--
-- KEYS[1] -> asynq:{<queue>}:scheduled   (zset)
-- KEYS[2] -> asynq:{<queue>}:pending     (list; asynq dequeues from the right)
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> now, unix ns ("pending_since", as asynq's forwarder writes)
-- ARGV[3], ARGV[4], ... -> pairs of task id, due time (unix ms, as given to requeue.lua)
-- Returns the number of tasks moved.

local moved = 0
for i = 3, #ARGV, 2 do
  if move(ARGV[1], KEYS[1], KEYS[2], ARGV[i], ARGV[i + 1], ARGV[2], true) then moved = moved + 1 end
end
return moved
