-- tokenbucket.lua: the token bucket, the default algorithm, written once:
-- every script that reads or writes a token bucket's state appends this
-- file to common.lua.
--
-- A bucket holds burst (L.b) tokens and refills one every interval (L.t, ns).
-- Its state, kept as how long until it is full again (the backlog, ns), is
-- one record at the id's 'tb' key: 'Q', then the numbers (see pack_record
-- in common.lua)
--
--   backlog, last, t, leased, until, x, cache [, b, q, qp]
--
--   backlog  ns until the bucket is full, as of last (µs); beyond b*t it is
--            tokens booked for the future (reservations)
--   t        the interval the backlog was priced at: when the policy's rate
--            changes, the tokens owed stay the same, at the new price
--   leased   tokens leased out to a caller (see algo.lease), until (µs):
--            the bucket does not refill over them until then
--   x        ms when the key expires (its TTL): most writes keep it
--   cache    what the state caches, so that a decision need not read the
--            other keys: 0 the id has no aux hash and the default policy
--            (from ARGV); 1 no aux hash and its own policy, at interval t
--            with burst b, quota q and period qp, which follow (no
--            concurrency limit); -1 nothing: read the policy and aux hash.
--            (A learned rate, in the aux hash, makes t differ from the
--            policy's: nothing is cached while there is one.)
--
-- Earlier versions' text states, "backlog:last[:t[:leased:until[:x:h:aux:
-- pol]]]", are read as caching nothing. Whatever writes the policy or aux
-- hash outside decide.lua is a change script (changeScript in
-- algorithm.go), which ends with drop_cache: no writer has to remember it.

-- ('Q', byte 81, then the numbers: seven, or ten with the policy)
local STATE, STATE_POLICY = '<Bddddddd', '<Bdddddddddd'

-- (every function's name is in the table from the start, so that it is
-- made at its size once: growing it costs a script run more than the
-- functions themselves)
local algo = {books = true, read = false, load = false, wait = false, pause = false, take = false, give = false,
  report = false, lease = false, store = false}

-- LINGER (µs): a state lives LINGER/2 to LINGER after its last write even
-- when its bucket is full, so that a tenant far under its limit keeps its
-- cached policy; then it expires.
local LINGER = 10000000

-- algo.read reads the id's state before its policy is known: L.owed (the
-- backlog as of now, ns, at interval L.was), L.lu and L.le (its lease), L.x;
-- and what the state caches: L.aux = false when the id has no aux hash,
-- with its policy (L.t, L.b, L.q, L.qp) when known. d: the default policy.
function algo.read(L, d, now)
  local v = redis.call('GET', L.sk)
  if not v then
    L.owed, L.lu, L.le, L.x, L.was = 0, 0, 0, 0, false
    return
  end
  local mark, bl, last, was, lu, le, x, cache, b, q, qp
  local size = #v
  if size == 57 or size == 81 then
    mark, bl, last, was, lu, le, x, cache, b, q, qp = unpack_record(size == 57 and STATE or STATE_POLICY, v)
  end
  if mark == 81 then
    -- (x ~= x: NaN; a record with numbers out of range is not one this code
    -- wrote)
    if not (bl >= 0 and bl < MAXBOOK * 2 and last > 0 and was > 0 and was < 1e15 and lu >= 0 and le >= 0 and x >= 0 and
        (cache == -1 or (cache == 0 and size == 57) or (cache == 1 and size == 81))) then
      error('the token bucket state is not one quotaq writes: a record out of range')
    end
  elseif string.byte(v, 1) == 81 then
    error('the token bucket state is not one quotaq writes: ' .. size .. ' bytes')
  else
    -- an earlier version's state
    bl, last, was, lu, le, x = string.match(v, '^(%d+):(%d+):?(%d*):?(%d*):?(%d*):?(%d*)')
    if not bl then error('the token bucket state is not one quotaq writes: ' .. v) end
    bl, last, was, lu, le, x, cache = tonumber(bl), tonumber(last), tonumber(was), tonumber(lu) or 0,
      tonumber(le) or 0, tonumber(x) or 0, -1
  end
  L.was, L.x, L.lu, L.le = was, x, lu, le
  if lu == 0 then L.le = 0 end
  L.owed = bl - (now - last) * 1000
  if L.owed < 0 then L.owed = 0 end
  if cache == 0 then
    L.aux, L.own, L.t, L.b, L.q, L.qp, L.c = false, false, d[1], d[2], d[3], d[4], d[5]
  elseif cache == 1 then
    L.aux, L.own, L.t, L.b, L.q, L.qp, L.c = false, true, was, b, q, qp, 0
  end
end

-- algo.load sets L.st, the backlog (ns) at the id's interval L.t, once its
-- policy is known: the tokens owed repriced at L.t, and a caller's previous
-- lease settled (k tokens, unspent of them not spent, granted at at, Redis
-- µs; k = 0: none): the unspent tokens go back, unless the lease has ended
-- by now (they may have become another lease's).
function algo.load(L, now, k, unspent, at, ttl)
  local st, t = L.owed, L.t
  if L.was and L.was ~= t and L.was > 0 then st = math.ceil(st / L.was * t) end
  if L.lu > 0 and L.le <= now then L.lu, L.le = 0, 0 end
  if k > 0 and L.lu > 0 and now < at + ttl then
    L.lu = math.max(0, L.lu - k)
    if L.lu == 0 then L.le = 0 end
    st = math.max(0, st - unspent * t)
    L.dirty = true
  end
  if L.lu * t > st then st = L.lu * t end
  L.st = st
end

-- algo.wait returns how long (ns) until n tokens are there: 0 now, -1 never.
function algo.wait(L, n, now)
  if n > L.b then return -1 end
  local w = L.st + (n - L.b) * L.t
  if w < 0 then return 0 end
  return w
end

-- algo.pause treats the bucket as empty until the pause (L.hold, ns) ends:
-- tokens booked from now on are due after it, one interval apart, not all
-- at its end.
function algo.pause(L)
  L.st = math.max(L.st, L.b * L.t + L.hold)
end

-- algo.take consumes n tokens, possibly booked in the future.
function algo.take(L, n, now)
  L.st, L.dirty = L.st + n * L.t, true
end

-- algo.give gives back n tokens (a cancelled reservation). Given due (µs:
-- when the cancelled booking's tokens were due; CancelTicket), it gives
-- back, as x/time/rate's Reservation.CancelAt, only what nothing relies on
-- since: n tokens less the time from due to the last booking's due time, or
-- to now when that is later. Bookings made after this one were placed
-- behind it (the last is due st - b*t from now), and since due the bucket
-- has been refilling over these tokens: giving all n back would let both
-- count. (Book A of 2, then B of 1, cancel A at burst 2: A gives back 1.)
function algo.give(L, n, now, due)
  local back = n * L.t
  if due then
    local relied = (now - due) * 1000 + math.max(L.st - L.b * L.t, 0) -- ns
    back = math.max(0, back - math.max(0, relied))
  end
  L.st, L.dirty = math.max(L.st - back, L.lu * L.t, 0), true
end

-- algo.report returns the tokens left now and the time (ns) until full.
function algo.report(L, now)
  local left = (L.b * L.t - L.st) / L.t
  if left <= 0 then return 0, L.st end
  return left - left % 1, L.st
end

-- lease_grant leases the caller up to want tokens besides the ones it took
-- (a tenant far under its limit), which it spends on its own until ttl µs
-- from now, and returns how many. Until then the bucket cannot refill over
-- them: tokens in the bucket plus tokens leased out never exceed the burst,
-- so the admissions of all callers, whenever within the lease they spend
-- them, are exactly those of one token bucket. At most what the bucket
-- refills in a lease (a tenant that refills slowly gets none; an unspent
-- lease costs no more than ttl idle), and never below half the burst left
-- in the bucket (what leases may waste cannot bring it to its limit).
function algo.lease(L, want, ttl, now)
  local room = math.min(math.floor((L.b * L.t - L.st) / L.t) - math.ceil(L.b / 2), math.floor(ttl * 1000 / L.t))
  if room <= 0 or want <= 0 then return 0 end
  local k = math.min(want, room)
  L.st, L.lu, L.le, L.dirty = L.st + k * L.t, L.lu + k, math.max(L.le, now + ttl), true
  return k
end

-- algo.store writes the state if a decision changed it, as of now. It
-- lives until its bucket is full and its lease has ended, and LINGER/2 to
-- LINGER after its last write: most writes keep the TTL they find (x,
-- cheaper than setting one; x is later than the key's true expiry by as
-- long as the script ran before TIME: it is kept only with 2 ms to spare).
function algo.store(L, now)
  if not L.dirty then return end
  local need = now + L.st / 1000
  if L.le > need then need = L.le end
  local keep = (L.x - 2) * 1000 >= need and L.x * 1000 >= now + LINGER / 2
  local px
  if not keep then
    px = math.ceil(math.max(need - now, LINGER) / 1000)
    L.x = math.floor(now / 1000) + px
  end
  local v
  if L.own and not L.aux and L.c == 0 then
    v = pack_record(STATE_POLICY, 81, L.st, now, L.t, L.lu, L.le, L.x, 1, L.b, L.q, L.qp)
  else
    v = pack_record(STATE, 81, L.st, now, L.t, L.lu, L.le, L.x, (L.aux or L.own) and -1 or 0)
  end
  if keep then
    redis.call('SET', L.sk, v, 'KEEPTTL')
  else
    redis.call('SET', L.sk, v, 'PX', px)
  end
end

-- drop_cache forgets what the state at key caches of the policy and aux
-- hashes (they are read again by the next decision), keeping its TTL.
local function drop_cache(key)
  local v = redis.call('GET', key)
  if not v or string.byte(v, 1) ~= 81 or (#v ~= 57 and #v ~= 81) then return end -- none, caching nothing, or not ours
  local _, bl, last, t, lu, le, x = unpack_record(STATE, v)
  redis.call('SET', key, pack_record(STATE, 81, bl, last, t, lu, le, x, -1), 'KEEPTTL')
end
