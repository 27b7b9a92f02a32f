-- tokenbucket.lua: the token bucket, kept as "backlog": how long (ns) until
-- the bucket is full again, measured at a time 'last' (µs). A token costs
-- interval_ns; the bucket holds burst tokens; backlog beyond burst*interval is
-- tokens booked for the future (reservations). Stored as "backlog:last" with
-- a TTL equal to the backlog, so an idle tenant's key disappears exactly when
-- its bucket would be full. The interval is stored too ("backlog:last:t"):
-- when the policy's rate changes, the tokens owed are repriced.

local algo = {books = true}

-- load returns the backlog (ns) as of now.
function algo.load(key, t, b, now)
  local v = redis.call('GET', key)
  if not v then return 0 end
  -- (lean.lua may have cached more fields after these three)
  local backlog, last, was = string.match(v, '^(%d+):(%d+):?(%d*)')
  backlog, last, was = tonumber(backlog), tonumber(last), tonumber(was)
  local elapsed = now - last
  if elapsed > 0 then
    if elapsed * 1000 >= backlog then return 0 end
    backlog = backlog - elapsed * 1000
  end
  if was and was ~= t and was > 0 then
    -- the rate changed: the tokens owed stay the same, at the new price
    backlog = math.ceil(backlog / was * t)
  end
  return backlog
end

-- wait returns how long (ns) until n tokens are there: 0 now, -1 never.
function algo.wait(key, st, t, b, n, now)
  if n > b then return -1 end
  local w = st + n * t - b * t
  if w < 0 then return 0 end
  return w
end

-- pause treats the bucket as empty until the pause (ns) ends: tokens booked
-- from now on are due after it, one interval apart, not all at its end.
function algo.pause(st, t, b, hold)
  return math.max(st, b * t + hold)
end

-- take consumes n tokens (possibly booked in the future) and returns the new state.
function algo.take(key, st, t, b, n, now)
  local backlog = st + n * t
  redis.call('SET', key, fmt(backlog) .. ':' .. fmt(now) .. ':' .. fmt(t), 'PX', math.ceil(backlog / 1000000))
  return backlog
end

-- give returns n tokens (a cancelled reservation).
function algo.give(key, st, t, b, n, now)
  local backlog = st - n * t
  if backlog <= 0 then
    redis.call('DEL', key)
    return 0
  end
  redis.call('SET', key, fmt(backlog) .. ':' .. fmt(now) .. ':' .. fmt(t), 'PX', math.ceil(backlog / 1000000))
  return backlog
end

-- report returns the tokens left now and the time (ns) until the bucket is full.
function algo.report(key, st, t, b, now)
  local left = math.floor((b * t - st) / t)
  if left < 0 then left = 0 end
  return left, st
end
