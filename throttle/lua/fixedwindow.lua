-- fixedwindow.lua: at most burst calls per window of burst*interval, windows
-- aligned to the epoch (INCRBY + PEXPIRE on one key per window). Cheap, but it
-- admits up to 2x burst around a window edge: the end of one window and the
-- start of the next. Reservations are not booked: Reserve only reports when
-- the next window opens.

local algo = {books = false}

local function window(t, b, now)
  local w = math.floor(b * t / 1000) -- window length, µs
  if w < 1 then w = 1 end
  return w, math.floor(now / w)
end

-- load returns {count in the current window, window length µs, window index}.
function algo.load(key, t, b, now)
  local w, idx = window(t, b, now)
  local v = redis.call('GET', key)
  if v then
    local c, i = string.match(v, '^(%d+):(%d+)$')
    if tonumber(i) == idx then return {tonumber(c), w, idx} end
  end
  return {0, w, idx}
end

function algo.wait(key, st, t, b, n, now)
  if n > b then return -1 end
  if st[1] + n <= b then return 0 end
  return ((st[3] + 1) * st[2] - now) * 1000
end

-- pause: the window itself is not changed; decide.lua waits for the pause.
function algo.pause(st, t, b, hold) return st end

function algo.take(key, st, t, b, n, now)
  local c = st[1] + n
  redis.call('SET', key, fmt(c) .. ':' .. fmt(st[3]), 'PX', math.ceil(((st[3] + 1) * st[2] - now) / 1000))
  return {c, st[2], st[3]}
end

-- give takes n back from the current window; given due (µs: when the
-- cancelled booking was made; CancelTicket), only if that was in this window.
function algo.give(key, st, t, b, n, now, due)
  if due and math.floor(due / st[2]) ~= st[3] then return st end
  local c = st[1] - n
  if c <= 0 then redis.call('DEL', key); return {0, st[2], st[3]} end
  redis.call('SET', key, fmt(c) .. ':' .. fmt(st[3]), 'PX', math.ceil(((st[3] + 1) * st[2] - now) / 1000))
  return {c, st[2], st[3]}
end

function algo.report(key, st, t, b, now)
  local left = b - st[1]
  if left < 0 then left = 0 end
  local reset = 0
  if st[1] > 0 then reset = ((st[3] + 1) * st[2] - now) * 1000 end
  return left, reset
end
