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
  for i = 1, n do
    redis.call('ZADD', key, now, fmt(now) .. ':' .. fmt(st[1] + i))
  end
  redis.call('PEXPIRE', key, math.ceil(st[2] / 1000))
  return {st[1] + n, st[2]}
end

function algo.give(key, st, t, b, n, now)
  redis.call('ZPOPMAX', key, n)
  return {math.max(0, st[1] - n), st[2]}
end

function algo.report(key, st, t, b, now)
  local left = b - st[1]
  if left < 0 then left = 0 end
  local reset = 0
  local e = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if e[2] then reset = (tonumber(e[2]) + st[2] - now) * 1000 end
  return left, reset
end
