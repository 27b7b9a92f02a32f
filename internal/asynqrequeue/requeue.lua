-- requeue.lua: moves an active task back to asynq's scheduled set, as is.
--
-- KEYS[1] -> asynq:{<queue>}:t:<id>      (task hash)
-- KEYS[2] -> asynq:{<queue>}:active      (list)
-- KEYS[3] -> asynq:{<queue>}:lease       (zset)
-- KEYS[4] -> asynq:{<queue>}:scheduled   (zset)
-- KEYS[5] -> asynq:{<queue>}:quotaq:parked:<tenant> (zset of the tenant's
--            tasks waiting for nothing booked, scored by due time, ms)
-- KEYS[6] -> asynq:{<queue>}:quotaq:booked:<tenant> (zset of the tenant's
--            tasks waiting for a booked slot, scored by due time, ms)
-- ARGV[1] -> task id
-- ARGV[2] -> due time, unix ms (stored as "quotaq_due" for the Waker)
-- ARGV[3] -> scheduled score: due time in unix seconds, rounded up
-- ARGV[4] -> this wait, ms, added to "quotaq_waited_ms"
-- ARGV[5] -> cap on the total wait, ms (0: no cap)
-- ARGV[6] -> '1': the task waits for nothing booked (a quota, a pause, an
--            outage): recorded in KEYS[5], so that Release can bring it
--            back early; '0': it waits for a booked slot: recorded in
--            KEYS[6], so that Retime can move it with its slot; '': neither
-- ARGV[7] -> why it waits (a Cause), stored as "quotaq_cause"; '': none
--            (a cause an earlier re-queue stored is removed)
-- Returns {code, throttles, waited_ms}:
--   code 1: moved; throttles and waited_ms are the task's new totals
--   code 0: the task is not active and leased (not ours): nothing written
--   code -1: the new total wait would pass the cap: nothing written

local state = redis.call("HGET", KEYS[1], "state")
if state ~= "active" or not redis.call("ZSCORE", KEYS[3], ARGV[1]) then
  return {0, 0, 0}
end
local throttles = tonumber(redis.call("HGET", KEYS[1], "quotaq_throttles") or "0") + 1
local waited = tonumber(redis.call("HGET", KEYS[1], "quotaq_waited_ms") or "0") + tonumber(ARGV[4])
if tonumber(ARGV[5]) > 0 and waited > tonumber(ARGV[5]) then
  return {-1, throttles, waited}
end
if redis.call("LREM", KEYS[2], 0, ARGV[1]) == 0 then
  return {0, 0, 0}
end
redis.call("ZREM", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[1], "state", "scheduled", "quotaq_throttles", throttles,
           "quotaq_waited_ms", waited, "quotaq_due", ARGV[2])
if ARGV[7] ~= "" then
  redis.call("HSET", KEYS[1], "quotaq_cause", ARGV[7])
else
  redis.call("HDEL", KEYS[1], "quotaq_cause")
end
redis.call("ZADD", KEYS[4], ARGV[3], ARGV[1])
if ARGV[6] ~= "" then
  local into, out = KEYS[6], KEYS[5]
  if ARGV[6] == "1" then into, out = KEYS[5], KEYS[6] end
  redis.call("ZADD", into, ARGV[2], ARGV[1])
  redis.call("ZREM", out, ARGV[1])
  local ttl = math.ceil(tonumber(ARGV[4]) / 1000) + 86400
  if redis.call("TTL", into) < ttl then redis.call("EXPIRE", into, ttl) end
end
return {1, throttles, waited}
