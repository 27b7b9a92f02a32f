-- fixedwindow.lua: at most burst calls per window of burst*interval, windows
-- aligned to the epoch (one key per window: "count:index"). Cheap, but it
-- admits up to 2x burst around a window edge: the end of one window and the
-- start of the next. Reservations are not booked: Reserve only reports when
-- the next window opens. The functions are token bucket's (tokenbucket.lua);
-- the state L.st is {count in the current window, window µs, window index}.

-- (every function's name is in the table from the start, so that it is
-- made at its size once: growing it costs a script run more than the
-- functions themselves)
local algo = {books = false, read = false, load = false, wait = false, pause = false, take = false, give = false,
  report = false, lease = false, store = false}

function algo.read(L, d, now) end

function algo.load(L, now)
  local w = math.max(1, math.floor(L.b * L.t / 1000))
  local idx = math.floor(now / w)
  L.st = {0, w, idx}
  local v = redis.call('GET', L.sk)
  if v then
    local c, i = string.match(v, '^(%d+):(%d+)$')
    if tonumber(i) == idx then L.st[1] = tonumber(c) end
  end
end

function algo.wait(L, n, now)
  if n > L.b then return -1 end
  if L.st[1] + n <= L.b then return 0 end
  return ((L.st[3] + 1) * L.st[2] - now) * 1000
end

-- the window itself is not changed by a pause: decide.lua waits for it.
function algo.pause(L) end

local function put(L, c, now)
  L.st[1] = c
  if c <= 0 then
    redis.call('DEL', L.sk)
    L.st[1] = 0
    return
  end
  redis.call('SET', L.sk, fmt(c) .. ':' .. fmt(L.st[3]), 'PX', math.ceil(((L.st[3] + 1) * L.st[2] - now) / 1000))
end

function algo.take(L, n, now) put(L, L.st[1] + n, now) end

-- give takes n back from the current window; given due (µs: when the
-- cancelled booking was made; CancelTicket), only if that was in this window.
function algo.give(L, n, now, due)
  if due and math.floor(due / L.st[2]) ~= L.st[3] then return end
  put(L, L.st[1] - n, now)
end

function algo.report(L, now)
  local reset = 0
  if L.st[1] > 0 then reset = ((L.st[3] + 1) * L.st[2] - now) * 1000 end
  return math.max(0, L.b - L.st[1]), reset
end

function algo.lease(L, want, ttl, now) return 0 end

function algo.store(L, now) end
