-- hold.lua: an id's upstream refused a call (429 or 503): pause the id for
-- as long as it said (Retry-After), and cut the rate it runs at (learning
-- the upstream, see learned_t in common.lua). A change script (see tokenbucket.lua).
--
-- The pause: every decision that involves the id waits until it ends.
-- Everything already booked moves back by as long as the pause grows:
-- tickets keep their spacing and land after it, instead of all coming due
-- together when it ends, and so does the token bucket's backlog, so tokens
-- booked during the pause queue up behind them.
--
-- The cut: the rate the id runs at now (its policy's, or what it has
-- climbed back to since the last cut) times a factor, at least a floor (a
-- fraction of the policy's rate); one cut per cooldown, so that the calls
-- already on their way when the upstream said stop cut once, not once each.
-- The tickets due after the pause spread out by as much as the interval
-- grew, keeping their order: the jobs booked at the old rate come at the
-- new one (a worker moves its parked tasks to their tickets' new times,
-- Limiter.TicketDues).
--
-- KEYS[1] -> the id's token bucket state ("tb"), whatever the algorithm
-- KEYS[2] -> aux hash of the id      KEYS[3] -> the id's hold counter
-- KEYS[4] -> the id's policy hash
-- ARGV[1] -> pause length, µs (0: no pause)
-- ARGV[2] -> '1' when the algorithm books future tokens (token bucket)
-- ARGV[3] -> the default policy's interval, ns (for an id without a policy)
-- ARGV[4] -> the cut's factor, in (0, 1) (0: no cut)
-- ARGV[5] -> the floor, a fraction of the policy's rate
-- ARGV[6] -> how long a learned rate takes to climb back by the policy's
--            whole rate, µs
-- ARGV[7] -> the cooldown between two cuts, µs
-- Returns the number of holds the id has had, this one included.

local now = now_us()
local L = {sk = KEYS[1], ak = KEYS[2]}
local factor = tonumber(ARGV[4])
local k = 1 -- how much longer the interval became (a cut)
if factor > 0 then
  local t = tonumber(redis.call('HGET', KEYS[4], 't')) or tonumber(ARGV[3])
  local l = redis.call('HMGET', L.ak, 'lr', 'lc')
  local lc = tonumber(l[2])
  if not lc or now - lc >= tonumber(ARGV[7]) then
    local recovery = tonumber(ARGV[6])
    local was = learned_rate(t, tonumber(l[1]), lc, now, recovery)
    local rate = math.max(was * factor, 1e9 / t * tonumber(ARGV[5]))
    if rate < was then k = was / rate end
    redis.call('HSET', L.ak, 'lr', string.format('%.17g', rate), 'lc', fmt(now), 'lv', fmt(recovery))
    aux_extend(L, now + recovery, now)
  end
end
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', L.ak, 'h')) or 0
local from = math.max(cur, now) -- where the pause ended before this call
local shift = 0 -- µs
if untl > from then
  shift = untl - from
  redis.call('HSET', L.ak, 'h', fmt(untl))
end
if shift > 0 or k > 1 then
  -- tickets move back by the pause's growth, and those after the pause
  -- spread out as the interval grew, keeping their order
  local after = math.max(untl, from)
  local last_due = tickets_move(L, function(due)
    due = due + shift
    if due > after then due = after + math.ceil((due - after) * k) end
    return due
  end)
  aux_extend(L, math.max(last_due, after), now)
end
if shift > 0 and ARGV[2] == '1' then
  -- the bucket's backlog moves back by the pause's growth too (a lease is
  -- kept). A cut reprices the backlog by k at the next decision, as the
  -- interval stored is the old one: the pause is not to grow with it.
  algo.read(L, {1, 1, 0, 0}, now)
  if L.owed > 0 and L.was then
    L.t, L.aux = L.was, true
    algo.load(L, now, 0, 0, 0, 0)
    L.st, L.dirty = math.max(L.owed + math.ceil(shift * 1000 / k), L.st), true
    algo.store(L, now)
  end
end
return redis.call('INCR', KEYS[3])
