-- move.lua: prepended to wake.lua and release.lua.

-- move brings task id back from the scheduled set to its queue's pending
-- list (to the head, where asynq dequeues next, or the tail), as asynq's
-- forwarder would, but only if it is still the scheduled task Requeue left:
-- its "quotaq_due" is due (unix ms, as a string). It reports whether it did.
local function move(prefix, scheduled, pending, id, due, now_ns, head)
  local key = prefix .. id
  if redis.call("HGET", key, "quotaq_due") ~= due or redis.call("HGET", key, "state") ~= "scheduled"
      or redis.call("ZREM", scheduled, id) == 0 then
    return false
  end
  if head then redis.call("RPUSH", pending, id) else redis.call("LPUSH", pending, id) end
  redis.call("HSET", key, "state", "pending", "pending_since", now_ns)
  return true
end
