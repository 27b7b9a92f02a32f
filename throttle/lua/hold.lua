-- hold.lua: pause an id (its upstream answered 429 or 503 with Retry-After):
-- every decision that involves it waits until the pause ends. Appended to
-- common.lua and dropcache.lua.
--
-- Everything already booked moves back by as long as the pause grows:
-- tickets keep their spacing and land after it, instead of all coming due
-- together when it ends, and so does the token bucket's backlog, so tokens
-- booked during the pause queue up behind them.
--
-- KEYS[1] -> aux hash of the id      KEYS[2] -> the id's hold counter
-- KEYS[3] -> the id's token bucket state ("tb"), whatever the algorithm
-- ARGV[1] -> pause length, µs (> 0)
-- ARGV[2] -> '1' when the algorithm books future tokens (token bucket)
-- Returns the number of holds the id has had, this one included.

local now = now_us()
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'h')) or 0
local from = math.max(cur, now) -- where the pause ended before this call
if untl > from then
  local shift = untl - from -- µs
  redis.call('HSET', KEYS[1], 'h', fmt(untl))
  local last_due = untl
  local aux = redis.call('HGETALL', KEYS[1])
  for i = 1, #aux, 2 do
    if string.sub(aux[i], 1, 2) == 'k:' then
      -- (-due: a ticket that holds its start too, and keeps it)
      local v = tonumber(aux[i + 1])
      local due = math.abs(v) + shift
      if v < 0 then redis.call('HSET', KEYS[1], aux[i], fmt(-due)) else redis.call('HSET', KEYS[1], aux[i], fmt(due)) end
      if due > last_due then last_due = due end
    end
  end
  aux_extend(KEYS[1], last_due, now)
  if ARGV[2] == '1' then
    local v = redis.call('GET', KEYS[3])
    if v then
      -- written without lean.lua's cached fields (the pause is one), so the
      -- next decision reads the aux hash; a lease (see lean.lua) is kept;
      -- a full bucket's state without one goes
      local backlog, last, t, u, e = string.match(v, '^(%d+):(%d+):?(%d*):?(%d*):?(%d*)')
      backlog = tonumber(backlog) - (now - tonumber(last)) * 1000
      if backlog > 0 then backlog = backlog + shift * 1000 end
      store_bucket(KEYS[3], backlog, now, tonumber(t), tonumber(u), tonumber(e))
    end
  else
    drop_cache(KEYS[3]) -- a token bucket Limiter on the same keys reads 'h' again
  end
end
return redis.call('INCR', KEYS[2])
