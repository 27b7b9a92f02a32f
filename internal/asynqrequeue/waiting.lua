-- waiting.lua: counts the tasks of one queue that still wait for a slot of
-- an id (see WakeOne): entries whose task is still scheduled with the due
-- time Requeue left ("quotaq_due" equals the entry's score). Entries of
-- tasks that have run since are dropped on the way.
--
-- KEYS[1] -> asynq:{<queue>}:quotaq:slotwait:<id>  (zset: id -> due ms)
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> the most entries to look at
-- Returns the tasks still waiting.

local n = 0
local entries = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1, "WITHSCORES")
for i = 1, #entries, 2 do
  local key = ARGV[1] .. entries[i]
  if redis.call("HGET", key, "quotaq_due") == entries[i + 1] and redis.call("HGET", key, "state") == "scheduled" then
    n = n + 1
  else
    redis.call("ZREM", KEYS[1], entries[i])
  end
end
return n
