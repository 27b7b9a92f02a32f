-- waiting.lua: counts the tasks of one queue that still wait as one of
-- quotaq's indexes says (a tenant's parked or booked tasks, an id's
-- tasks waiting for a slot), by why they wait: entries whose task is still
-- scheduled with the due time Requeue left ("quotaq_due" equals the entry's
-- score), counted by the task's "quotaq_cause". Entries of tasks that have
-- run or moved since are dropped on the way.
--
-- KEYS[1] -> the index: a zset of task id -> due, unix ms
-- ARGV[1] -> task key prefix, asynq:{<queue>}:t:
-- ARGV[2] -> the most entries to look at
-- ARGV[3] -> the cause to count a task under when it has none recorded (put
--            back by a worker that did not record it) or one not in ARGV[4..]
-- ARGV[4..] -> the causes to count, in order
-- Returns {tasks still waiting, the earliest due time among them (ms; 0:
-- none), then the count of each cause of ARGV[4..], in order}.

local counts = {}
for i = 4, #ARGV do counts[ARGV[i]] = 0 end
local n, first = 0, 0
local entries = redis.call("ZRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1, "WITHSCORES")
for i = 1, #entries, 2 do
  local f = redis.call("HMGET", ARGV[1] .. entries[i], "quotaq_due", "state", "quotaq_cause")
  if f[1] == entries[i + 1] and f[2] == "scheduled" then
    n = n + 1
    if first == 0 then first = tonumber(entries[i + 1]) end
    local cause = f[3]
    if not cause or counts[cause] == nil then cause = ARGV[3] end
    counts[cause] = counts[cause] + 1
  else
    redis.call("ZREM", KEYS[1], entries[i])
  end
end
local out = {n, first}
for i = 4, #ARGV do out[#out + 1] = counts[ARGV[i]] end
return out
