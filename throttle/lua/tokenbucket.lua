-- tokenbucket.lua: the token bucket, kept as "backlog": how long (ns) until
-- the bucket is full again, measured at a time 'last' (µs). A token costs
-- interval_ns; the bucket holds burst tokens; backlog beyond burst*interval is
-- tokens booked for the future (reservations). Stored as "backlog:last:t"
-- with a TTL equal to the backlog, so an idle tenant's key disappears when
-- its bucket would be full (lean.lua keeps it a little longer). The interval
-- t is stored so that when the policy's rate changes, the tokens owed are
-- repriced.

local algo = {books = true}

-- lease[key]: the tokens leased out of the bucket and not settled yet
-- ("backlog:last:t:leased:until", see lean.lua), while until (µs) has not
-- passed. The bucket cannot refill over them, and every write keeps them.
local lease = {}

-- load returns the backlog (ns) as of now.
function algo.load(key, t, b, now)
  local v = redis.call('GET', key)
  lease[key] = nil
  if not v then return 0 end
  -- (lean.lua may have cached more fields after these)
  local backlog, last, was, u, e = string.match(v, '^(%d+):(%d+):?(%d*):?(%d*):?(%d*)')
  backlog, last, was = tonumber(backlog), tonumber(last), tonumber(was)
  local elapsed = now - last
  if elapsed > 0 then
    if elapsed * 1000 >= backlog then backlog = 0 else backlog = backlog - elapsed * 1000 end
  end
  if was and was ~= t and was > 0 then
    -- the rate changed: the tokens owed stay the same, at the new price
    backlog = math.ceil(backlog / was * t)
  end
  u, e = tonumber(u), tonumber(e)
  if u and u > 0 and e > now then
    lease[key] = {u, e}
    backlog = math.max(backlog, u * t)
  end
  return backlog
end

-- store writes a backlog (ns) as of now, with the key's lease.
local function store(key, backlog, t, now)
  local l = lease[key]
  if l then
    store_bucket(key, backlog, now, t, l[1], l[2])
  else
    store_bucket(key, backlog, now, t)
  end
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
  store(key, backlog, t, now)
  return backlog
end

-- give returns n tokens (a cancelled reservation). Given due (µs: when the
-- cancelled booking's tokens were due; CancelTicket), it gives back, as
-- x/time/rate's Reservation.CancelAt, only what nothing relies on since:
-- n tokens less the time from due to the last booking's due time, or to now
-- when that is later. Bookings made after this one were placed behind it
-- (the last is due st - b*t from now), and since due the bucket has been
-- refilling over these tokens: giving all n back would let both count.
-- (Book A of 2, then B of 1, cancel A at burst 2: A gives back 1, not 2.)
function algo.give(key, st, t, b, n, now, due)
  local back = n * t
  if due then
    local relied = (now - due) * 1000 + math.max(st - b * t, 0) -- ns
    back = math.max(0, back - math.max(0, relied))
  end
  local backlog = math.max(st - back, 0)
  if lease[key] then backlog = math.max(backlog, lease[key][1] * t) end
  store(key, backlog, t, now)
  return backlog
end

-- report returns the tokens left now and the time (ns) until the bucket is full.
function algo.report(key, st, t, b, now)
  local left = math.floor((b * t - st) / t)
  if left < 0 then left = 0 end
  return left, st
end
