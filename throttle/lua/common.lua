-- common.lua: shared by every algorithm (prepended to each algorithm's script).
-- The clock is Redis's own TIME, never the caller's. All arithmetic is on
-- integers (microseconds, nanoseconds) that stay below 2^53, where Lua's
-- doubles are exact.

local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- fmt renders an integer without an exponent (tostring(1e15) is "1e+15").
local function fmt(x)
  return string.format('%d', x)
end

-- store_bucket writes a token bucket's state "backlog:last[:t[:leased:until]]"
-- as of now (t the interval it is priced at; leased tokens u until e, µs:
-- see lean.lua), with a TTL until the bucket is full and its lease has
-- ended. A full bucket without a lease goes.
local function store_bucket(key, backlog, now, t, u, e)
  local leased = u and u > 0 and e > now
  if backlog <= 0 and not leased then
    redis.call('DEL', key)
    return
  end
  backlog = math.max(backlog, 0)
  local val = fmt(backlog) .. ':' .. fmt(now)
  if t then val = val .. ':' .. fmt(t) end
  local ttl = math.ceil(backlog / 1000000)
  if leased then
    val = val .. ':' .. fmt(u) .. ':' .. fmt(e)
    ttl = math.max(ttl, math.ceil((e - now) / 1000))
  end
  redis.call('SET', key, val, 'PX', math.max(ttl, 1))
end

-- policy reads a tenant's policy hash, or returns the default from ARGV.
-- Returns interval_ns (time per token), burst, quota, quota_period_us.
local function policy(key, d)
  local p = redis.call('HMGET', key, 't', 'b', 'q', 'qp')
  if p[1] then
    return tonumber(p[1]), tonumber(p[2]), tonumber(p[3]) or 0, tonumber(p[4]) or 0
  end
  return d[1], d[2], d[3], d[4]
end

-- quota_load returns how much of the current quota period is used and the
-- period's index. With a period (qp > 0) periods are aligned windows of qp
-- microseconds since the Unix epoch; without one the period only ends when
-- the quota hash is deleted (Limiter.ResetQuota).
local function quota_load(key, qp, now)
  local v = redis.call('HMGET', key, 'used', 'win')
  local win = 0
  if qp > 0 then win = math.floor(now / qp) end
  if v[1] and tonumber(v[2]) == win then
    return tonumber(v[1]), win
  end
  return 0, win
end

-- quota_reset_us is the time until the current quota period ends (0: unknown).
-- Without a period, the end is the tenant's recorded reset ('next'), else
-- the default one (defnext). A recorded reset that is due but has not run
-- yet (its task is on its way) says: ask again in a second; one overdue by
-- more than an hour is taken as stale (0: unknown).
local function quota_reset_us(key, qp, win, now, defnext)
  if qp > 0 then return (win + 1) * qp - now end
  local nxt = tonumber(redis.call('HGET', key, 'next'))
  if not nxt or nxt <= now - 3600000000 then nxt = defnext end
  if nxt > now then return nxt - now end
  if nxt > now - 3600000000 then return 1000000 end
  return 0
end

local function quota_store(key, used, win, qp, now)
  redis.call('HSET', key, 'used', fmt(used), 'win', fmt(win))
  if qp > 0 then
    redis.call('PEXPIRE', key, math.ceil(((win + 1) * qp - now) / 1000) + 1000)
  end
end

-- aux holds the upstream pause ('h': until when, in µs), reservation
-- tickets ('k:<ticket>': when the reserved tokens are due, in µs; negative,
-- -due, once the ticket also holds its start: see starts_wait), the
-- starts ('s', see starts_wait) and the rate learned from the upstream's
-- refusals ('lr' per second, cut at 'lc' µs: see learned_t).
-- aux_load returns the pause (ns), the ticket's due time, 's' (nil when
-- the starts are no longer counted: no ticket left and their backlog
-- gone; see ticket_del), 'lr', 'lc'.
local function aux_load(key, ticket, now)
  local v = redis.call('HMGET', key, 'h', 'k:' .. ticket, 's', 'lr', 'lc', 'n')
  local hold = 0
  if v[1] and tonumber(v[1]) > now then hold = (tonumber(v[1]) - now) * 1000 end
  local s = tonumber(v[3])
  if s and s <= now and (tonumber(v[6]) or 0) <= 0 then
    redis.call('HDEL', key, 's')
    s = nil
  end
  return hold, tonumber(v[2]), s, tonumber(v[4]), tonumber(v[5])
end

-- Learning the upstream: when an id's upstream refuses a call (429, 503),
-- hold.lua cuts the rate the id runs at ('lr', at 'lc'); from then on it
-- climbs back linearly, by the policy's whole rate in 'recovery' µs, while
-- no refusal cuts it again, and never above the policy's rate.
-- learned_rate returns the rate (per second) it has climbed back to by now,
-- at most the policy's (1e9 / t).
local function learned_rate(t, lr, lc, now, recovery)
  local full = 1e9 / t
  if not lr or recovery <= 0 then return full end
  return math.min(full, lr + full * (now - lc) / recovery)
end

-- learned_t returns the interval (ns) an id runs at: the policy's t, or
-- longer while a learned rate is below the policy's.
local function learned_t(t, lr, lc, now, recovery)
  return math.max(t, math.ceil(1e9 / learned_rate(t, lr, lc, now, recovery)))
end

local function aux_extend(key, until_us, now)
  local ttl = redis.call('PTTL', key)
  local want = math.ceil((until_us - now) / 1000) + 60000
  if ttl < want then redis.call('PEXPIRE', key, want) end
end

-- Starts: a booked slot says when a job may start, but the job may come
-- back later than that (its worker was stopped, Redis was away, its queue
-- was paused), and many late jobs must not start together. So the calls
-- that actually start are paced by a second token bucket over the same
-- policy, kept while an id has tickets: 's' in the aux hash, the time (µs)
-- until which its starts are booked (its backlog is s - now). A job that
-- redeems its ticket takes a token from it, at the time it starts. The
-- starts keep one token of the burst in reserve (a burst of one stays one):
-- a late job that starts up to an interval after its turn (see decide.lua),
-- and the calls' own jitter between their start and their arrival at the
-- upstream, then stay within the policy there. The starts are counted from
-- the tenant's first booking ('s' set from the bucket, see starts_backlog)
-- until its last ticket is redeemed or cancelled ('n' counts them).
-- Without 's', the starts are those the bucket admitted, so the bucket's
-- own backlog stands for them, up to the starts' own burst (less the
-- reserve): counted low by at most the reserved token, they still never
-- exceed the policy's burst.

-- starts_backlog returns the starts' backlog (ns) as of now: from 's', or
-- else from the bucket's backlog bl.
local function starts_backlog(s, bl, t, b, now)
  if s then return math.max(0, (s - now) * 1000) end
  return math.min(bl, math.max(b - 1, 1) * t)
end

-- starts_wait returns how long (ns) until n more calls may start.
local function starts_wait(sb, t, b, n)
  return math.max(0, sb + (n - math.max(b - 1, n)) * t)
end

-- tickets_move rewrites the due time of every ticket on an aux hash as
-- move(due) (a ticket that holds its start keeps its sign: -due), and
-- returns the latest.
local function tickets_move(key, move)
  local last = 0
  local aux = redis.call('HGETALL', key)
  for i = 1, #aux, 2 do
    if string.sub(aux[i], 1, 2) == 'k:' then
      local v = tonumber(aux[i + 1])
      local due = move(math.abs(v))
      last = math.max(last, due)
      if v < 0 then due = -due end
      redis.call('HSET', key, aux[i], fmt(due))
    end
  end
  return last
end

-- ticket_add records ticket's due time on an aux hash, counting it in 'n'
-- when new.
local function ticket_add(key, ticket, due)
  if redis.call('HSET', key, 'k:' .. ticket, fmt(due)) == 1 then
    redis.call('HINCRBY', key, 'n', 1)
  end
end

-- ticket_del takes a ticket out of an aux hash. With the last one gone the
-- starts are counted only until their backlog is gone ('s' then goes, see
-- aux_load): calls that start right after late ones still see them.
local function ticket_del(key, ticket)
  if redis.call('HDEL', key, 'k:' .. ticket) == 1 and redis.call('HINCRBY', key, 'n', -1) <= 0 then
    redis.call('HDEL', key, 'n')
  end
end

-- starts_take books the start of n calls (now, or after the starts already
-- booked) and returns the new 's' (µs), which it writes, keeping the aux
-- hash at least as long.
local function starts_take(key, sb, t, n, now)
  local s = now + math.ceil((sb + n * t) / 1000)
  redis.call('HSET', key, 's', fmt(s))
  aux_extend(key, s, now)
  return s
end
