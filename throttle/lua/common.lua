-- common.lua: what an id (a tenant, an upstream) has besides its
-- algorithm's state: its policy, its quota, and its aux hash (a pause,
-- reservation tickets, the starts, a rate learned from the upstream).
-- Prepended to every script. Functions that read or write an id take its
-- table L: L.pk policy hash, L.sk algorithm state, L.qk quota hash, L.ak
-- aux hash, L.zk slots (the KEYS, in that order, five per id).
--
-- The clock is Redis's own TIME, never the caller's. All arithmetic is on
-- integers (microseconds, nanoseconds) that stay below 2^53, where Lua's
-- doubles are exact.


-- Records. The token bucket's state, a decision's arguments and its reply
-- are records of numbers, each a little-endian double (exact for the
-- integers used here): packed and unpacked in one call, with no text to
-- parse or format. Redis's struct library does it; a server without one
-- (the embedded miniredis) gets the same bytes from plain Lua below.

-- pack_record('<Bdd...', x1, x2, ...) packs as many numbers as the format
-- says ('d' a double: no NaN, infinity or subnormals; 'B' a byte, 0 to
-- 255); any more are left out. unpack_record('<Bdd...', s, pos) returns
-- the numbers packed in s from pos (1 when nil), then the position after
-- them. A script chooses them as it starts; a Redis function library, which
-- cannot see the struct library (nor any function) while it loads, on
-- first use; then they are called directly.
local pack_record, unpack_record

-- (the plain Lua codec is made only where it is used)
local function choose_records()
  local lib = rawget(_G, 'struct')
  if lib then
    pack_record, unpack_record = lib.pack, lib.unpack
    return
  end
  pack_record = function(f, ...)
    local out = {}
    for i = 1, #f - 1 do
      local x, sign, e, m = select(i, ...), 0, 0, 0
      if string.sub(f, i + 1, i + 1) == 'B' then
        out[#out + 1] = string.char(x)
      else
        if x < 0 then sign, x = 128, -x end
        if x > 0 then
          m, e = math.frexp(x) -- x = m * 2^e, 1/2 <= m < 1
          m, e = (m * 2 - 1) * 2 ^ 52, e + 1022
        end
        for _ = 1, 6 do
          out[#out + 1] = string.char(m % 256)
          m = math.floor(m / 256)
        end
        out[#out + 1] = string.char(e % 16 * 16 + m)
        out[#out + 1] = string.char(sign + math.floor(e / 16))
      end
    end
    return table.concat(out)
  end

  unpack_record = function(f, s, pos)
    local v = {}
    pos = pos or 1
    for i = 1, #f - 1 do
      if string.sub(f, i + 1, i + 1) == 'B' then
        v[i] = string.byte(s, pos)
        if not v[i] then error('a record too short: ' .. #s .. ' bytes') end
        pos = pos + 1
      else
        local b1, b2, b3, b4, b5, b6, b7, b8 = string.byte(s, pos, pos + 7)
        if not b8 then error('a record too short: ' .. #s .. ' bytes') end
        local e = b8 % 128 * 16 + math.floor(b7 / 16)
        local m = (((((b7 % 16 * 256 + b6) * 256 + b5) * 256 + b4) * 256 + b3) * 256 + b2) * 256 + b1
        v[i] = 0
        if e > 0 then v[i] = math.ldexp(m + 2 ^ 52, e - 1075) end
        if b8 >= 128 then v[i] = -v[i] end
        pos = pos + 8
      end
    end
    v[#v + 1] = pos
    return unpack(v)
  end
end
if redis.register_function then
  -- a function library that loads: nothing but redis can be looked at
  -- yet (see above), so the first call chooses
  pack_record = function(...) choose_records() return pack_record(...) end
  unpack_record = function(...) choose_records() return unpack_record(...) end
else
  choose_records() -- a script
end

local function now_us()
  local t = redis.call('TIME')
  return t[1] * 1000000 + t[2]
end

-- fmt renders an integer without an exponent (tostring(1e15) is "1e+15").
local function fmt(x)
  return string.format('%d', x)
end

-- MAXBOOK (ns, ~46 days) is the furthest ahead tokens are booked: it keeps
-- integers exact.
local MAXBOOK = 4000000000000000

-- policy_load sets L.t (interval_ns: time per token), L.b (burst), L.q
-- (quota), L.qp (quota period, µs), L.c (concurrency) from the id's policy
-- hash, or from the default d; L.own says the id has its own.
local function policy_load(L, d)
  local p = redis.call('HMGET', L.pk, 't', 'b', 'q', 'qp', 'c')
  L.own = p[1] ~= false
  if L.own then
    L.t, L.b, L.q, L.qp = tonumber(p[1]), tonumber(p[2]), tonumber(p[3]) or 0, tonumber(p[4]) or 0
    L.c = tonumber(p[5]) or 0
  else
    L.t, L.b, L.q, L.qp, L.c = d[1], d[2], d[3], d[4], d[5]
  end
end

-- Slots: with a concurrency limit (L.c > 0), each call in flight holds one
-- of the id's L.c slots, named by its caller (a task's id), in a sorted set
-- (holder -> until when, µs). The caller renews it while the call runs and
-- releases it when the call returns (slots.lua); a holder that dies frees
-- it when it runs out. A call that holds its slot already (a task run
-- again) keeps it.

-- slots_wait returns how long (ns) until the holder may have a slot: 0
-- now; else until the first slot runs out, which is the latest a slot
-- frees (a release frees one sooner).
local function slots_wait(L, holder, now)
  redis.call('ZREMRANGEBYSCORE', L.zk, '-inf', now)
  if redis.call('ZSCORE', L.zk, holder) or redis.call('ZCARD', L.zk) < L.c then return 0 end
  local first = redis.call('ZRANGE', L.zk, 0, 0, 'WITHSCORES')
  return math.max(1000, (tonumber(first[2]) - now) * 1000)
end

-- slots_take gives the holder its slot until until_us (µs).
local function slots_take(L, holder, until_us, now)
  redis.call('ZADD', L.zk, until_us, holder)
  if redis.call('PTTL', L.zk) < (until_us - now) / 1000 then
    redis.call('PEXPIRE', L.zk, math.ceil((until_us - now) / 1000))
  end
end

-- Quotas. With a period (qp > 0) periods are aligned windows of qp
-- microseconds since the Unix epoch; without one a period only ends when
-- the quota hash is deleted (Limiter.ResetQuota).

-- quota_load sets L.used, how much of the current quota period is used, and
-- L.win, the period's index.
local function quota_load(L, now)
  local v = redis.call('HMGET', L.qk, 'used', 'win')
  L.win, L.used = 0, 0
  if L.qp > 0 then L.win = math.floor(now / L.qp) end
  if v[1] and tonumber(v[2]) == L.win then L.used = tonumber(v[1]) end
end

-- quota_reset_us is the time until the current quota period ends (0:
-- unknown). Without a period, the end is the id's recorded reset ('next'),
-- else the default one (defnext). A recorded reset that is due but has not
-- run yet (its task is on its way) says: ask again in a second; one overdue
-- by more than an hour is taken as stale (0: unknown).
local function quota_reset_us(L, now, defnext)
  if L.qp > 0 then return (L.win + 1) * L.qp - now end
  local nxt = tonumber(redis.call('HGET', L.qk, 'next'))
  if not nxt or nxt <= now - 3600000000 then nxt = defnext end
  if nxt > now then return nxt - now end
  if nxt > now - 3600000000 then return 1000000 end
  return 0
end

local function quota_store(L, now)
  redis.call('HSET', L.qk, 'used', fmt(L.used), 'win', fmt(L.win))
  if L.qp > 0 then
    redis.call('PEXPIRE', L.qk, math.ceil(((L.win + 1) * L.qp - now) / 1000) + 1000)
  end
end

-- The aux hash holds the upstream pause ('h': until when, µs), reservation
-- tickets ('k:<ticket>': when the reserved tokens are due, µs; negative,
-- -due, once the ticket also holds its start: see starts_wait), their
-- count ('n'), the starts ('s', see starts_wait) and the rate learned from
-- the upstream's refusals ('lr' per second, cut at 'lc' µs: see learned_t).
-- Most ids have none. L.aux says whether the id has one (false: known not
-- to); every function here that writes it sets L.aux, so that the token
-- bucket's state does not cache "no aux hash" (see tokenbucket.lua).

-- aux_load sets, from the aux hash, L.hold (the pause left, ns), L.due (the
-- ticket's due time, µs; nil: not booked), L.s (nil once the starts are no
-- longer counted: no ticket left and their backlog gone; see ticket_del),
-- L.lr, L.lc.
local function aux_load(L, ticket, now)
  L.hold = 0
  if redis.call('PTTL', L.ak) == -2 then
    L.aux, L.due, L.s, L.lr, L.lc = false, false, false, false, false
    return
  end
  L.aux = true
  local v = redis.call('HMGET', L.ak, 'h', 'k:' .. ticket, 's', 'lr', 'lc', 'n')
  if v[1] and tonumber(v[1]) > now then L.hold = (tonumber(v[1]) - now) * 1000 end
  L.due, L.s, L.lr, L.lc = tonumber(v[2]), tonumber(v[3]), tonumber(v[4]), tonumber(v[5])
  if L.s and L.s <= now and (tonumber(v[6]) or 0) <= 0 then
    redis.call('HDEL', L.ak, 's')
    L.s = nil
  end
end

local function aux_extend(L, until_us, now)
  L.aux = true
  local ttl = redis.call('PTTL', L.ak)
  local want = math.ceil((until_us - now) / 1000) + 60000
  if ttl < want then redis.call('PEXPIRE', L.ak, want) end
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
-- the id's first booking ('s' set from the bucket, see starts_backlog)
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

-- starts_take books the start of n calls (now, or after the starts already
-- booked, sb ns) and sets L.s, keeping the aux hash at least as long.
local function starts_take(L, sb, n, now)
  L.s = now + math.ceil((sb + n * L.t) / 1000)
  redis.call('HSET', L.ak, 's', fmt(L.s))
  aux_extend(L, L.s, now)
end

-- ticket_set records ticket's due time (µs; -due: it holds its start too),
-- counting it in 'n' when new, and keeps the aux hash until it is due.
local function ticket_set(L, ticket, due, now)
  if redis.call('HSET', L.ak, 'k:' .. ticket, fmt(due)) == 1 then
    redis.call('HINCRBY', L.ak, 'n', 1)
  end
  aux_extend(L, math.abs(due), now)
end

-- ticket_del takes a ticket out of the aux hash. With the last one gone the
-- starts are counted only until their backlog is gone ('s' then goes, see
-- aux_load): calls that start right after late ones still see them.
local function ticket_del(L, ticket)
  if redis.call('HDEL', L.ak, 'k:' .. ticket) == 1 and redis.call('HINCRBY', L.ak, 'n', -1) <= 0 then
    redis.call('HDEL', L.ak, 'n')
  end
end

-- tickets_move rewrites the due time of every ticket on the aux hash as
-- move(due) (a ticket that holds its start keeps its sign: -due), and
-- returns the latest.
local function tickets_move(L, move)
  local last = 0
  local aux = redis.call('HGETALL', L.ak)
  for i = 1, #aux, 2 do
    if string.sub(aux[i], 1, 2) == 'k:' then
      local v = tonumber(aux[i + 1])
      local due = move(math.abs(v))
      last = math.max(last, due)
      if v < 0 then due = -due end
      redis.call('HSET', L.ak, aux[i], fmt(due))
    end
  end
  return last
end
