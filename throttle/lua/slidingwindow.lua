-- slidingwindow.lua: a sliding-window log: at most burst calls in any window
-- of burst*interval, one sorted-set member per admitted token. Exact, but it
-- costs memory per request (about burst members per busy tenant). Reservations
-- are not booked: Reserve only reports when enough entries will have left.

local algo = {books = false}

-- load trims entries older than the window and returns {count, window µs}.
function algo.load(key, t, b, now)
  local w = math.floor(b * t / 1000)
  if w < 1 then w = 1 end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. fmt(now - w + 1))
  return {redis.call('ZCARD', key), w}
end

function algo.wait(key, st, t, b, n, now)
  if n > b then return -1 end
  if st[1] + n <= b then return 0 end
  -- the (count+n-b)-th oldest entry must leave the window first
  local e = redis.call('ZRANGE', key, st[1] + n - b - 1, st[1] + n - b - 1, 'WITHSCORES')
  return (tonumber(e[2]) + st[2] - now) * 1000
end

-- pause: the window itself is not changed; decide.lua waits for the pause.
function algo.pause(st, t, b, hold) return st end

function algo.take(key, st, t, b, n, now)
  -- members "now:k", k unique among the key's members: after a cancel took
  -- an entry out, count + i may name one still there (at the same µs), and
  -- ZADD would move it instead of adding one
  local k = st[1]
  for i = 1, n do
    repeat k = k + 1 until redis.call('ZADD', key, 'NX', now, fmt(now) .. ':' .. fmt(k)) == 1
  end
  redis.call('PEXPIRE', key, math.ceil(st[2] / 1000))
  return {st[1] + n, st[2]}
end

-- give takes out n entries. Given due (µs: when the cancelled booking was
-- admitted; CancelTicket), the entries made then (any of that µs: they leave
-- the window together). Else the oldest, not the newest: an entry is owed
-- to the caller and may be any of them, and taking out an older one than
-- its own never lets more in (the caller's stays, and leaves later), while
-- taking out a newer one (another caller's) would.
function algo.give(key, st, t, b, n, now, due)
  local gone = 0
  if due then
    local e = redis.call('ZRANGEBYSCORE', key, due, due, 'LIMIT', 0, n)
    if #e > 0 then gone = redis.call('ZREM', key, unpack(e)) end
  else
    gone = #redis.call('ZPOPMIN', key, n) / 2
  end
  return {math.max(0, st[1] - gone), st[2]}
end

function algo.report(key, st, t, b, now)
  local left = b - st[1]
  if left < 0 then left = 0 end
  local reset = 0
  local e = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if e[2] then reset = (tonumber(e[2]) + st[2] - now) * 1000 end
  return left, reset
end
