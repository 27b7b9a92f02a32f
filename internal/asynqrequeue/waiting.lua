-- waiting.lua: counts the tasks of one queue that still wait as one of
-- quotaq's indexes says (a tenant's parked or booked tasks, an id's
-- tasks waiting for a slot): entries whose task is still scheduled with the
-- due time Requeue left ("quotaq_due" equals the entry's score). Entries of
-- tasks that have run or moved since are dropped on the way.
--
-- KEYS[1] -> the index: a zset of task id -> due, unix ms
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> the most entries to look at
-- Returns {tasks still waiting, the earliest due time among them (ms; 0:
-- none)}.

local n, first = 0, 0
local entries = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1, "WITHSCORES")
for i = 1, #entries, 2 do
  local key = ARGV[1] .. entries[i]
  if redis.call("HGET", key, "quotaq_due") == entries[i + 1] and redis.call("HGET", key, "state") == "scheduled" then
    n = n + 1
    if first == 0 then first = tonumber(entries[i + 1]) end
  else
    redis.call("ZREM", KEYS[1], entries[i])
  end
end
return {n, first}
