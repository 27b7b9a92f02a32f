-- slidingwindow.lua: a sliding-window log: at most burst calls in any window
-- of burst*interval, one sorted-set member per admitted token. Exact, but it
-- costs memory per request (about burst members per busy tenant).
-- Reservations are not booked: Reserve only reports when enough entries
-- will have left. The functions are token bucket's (tokenbucket.lua); the
-- state L.st is {entries in the window, window µs}.

-- (every function's name is in the table from the start, so that it is
-- made at its size once: growing it costs a script run more than the
-- functions themselves)
local algo = {books = false, read = false, load = false, wait = false, pause = false, take = false, give = false,
  report = false, lease = false, store = false}

function algo.read(L, d, now) end

-- load trims entries older than the window.
function algo.load(L, now)
  local w = math.max(1, math.floor(L.b * L.t / 1000))
  redis.call('ZREMRANGEBYSCORE', L.sk, '-inf', '(' .. fmt(now - w + 1))
  L.st = {redis.call('ZCARD', L.sk), w}
end

function algo.wait(L, n, now)
  if n > L.b then return -1 end
  local c = L.st[1]
  if c + n <= L.b then return 0 end
  -- the (count+n-b)-th oldest entry must leave the window first
  local e = redis.call('ZRANGE', L.sk, c + n - L.b - 1, c + n - L.b - 1, 'WITHSCORES')
  return (tonumber(e[2]) + L.st[2] - now) * 1000
end

-- the window itself is not changed by a pause: decide.lua waits for it.
function algo.pause(L) end

function algo.take(L, n, now)
  -- members "now:k", k unique among the key's members: after a cancel took
  -- an entry out, count + i may name one still there (at the same µs), and
  -- ZADD would move it instead of adding one
  local k = L.st[1]
  for i = 1, n do
    repeat k = k + 1 until redis.call('ZADD', L.sk, 'NX', now, fmt(now) .. ':' .. fmt(k)) == 1
  end
  redis.call('PEXPIRE', L.sk, math.ceil(L.st[2] / 1000))
  L.st[1] = L.st[1] + n
end

-- give takes out n entries. Given due (µs: when the cancelled booking was
-- admitted; CancelTicket), the entries made then (any of that µs: they leave
-- the window together). Else the oldest, not the newest: an entry is owed
-- to the caller and may be any of them, and taking out an older one than
-- its own never lets more in (the caller's stays, and leaves later), while
-- taking out a newer one (another caller's) would.
function algo.give(L, n, now, due)
  local gone = 0
  if due then
    local e = redis.call('ZRANGEBYSCORE', L.sk, due, due, 'LIMIT', 0, n)
    if #e > 0 then gone = redis.call('ZREM', L.sk, unpack(e)) end
  else
    gone = #redis.call('ZPOPMIN', L.sk, n) / 2
  end
  L.st[1] = math.max(0, L.st[1] - gone)
end

function algo.report(L, now)
  local reset = 0
  local e = redis.call('ZRANGE', L.sk, -1, -1, 'WITHSCORES')
  if e[2] then reset = (tonumber(e[2]) + L.st[2] - now) * 1000 end
  return math.max(0, L.b - L.st[1]), reset
end

function algo.lease(L, want, ttl, now) return 0 end

function algo.store(L, now) end
