-- lean.lua: token-bucket decisions on one id each (allow or reserve), the
-- common call, in as few Redis calls as possible: a tenant with no ticket
-- and no pause (no aux hash), deciding without booking under a ticket. It
-- gives the same answers as common.lua + tokenbucket.lua + decide.lua for
-- such a call, and leaves every other one to decide.lua, writing nothing
-- (its reply says -1): a tenant with an aux hash (tickets, a pause, starts),
-- a ticket to keep or to book, a state it does not know.
-- One run may carry several decisions for different tenants (batching): each
-- is decided on its own, in order, as if it were its own script run.
--
-- An active tenant costs TIME, GET and SET: its state string
-- "backlog:last:t:leased:until:x:hold:aux:pol" (most often
-- "backlog:last:t:0:0:x:0:0:pol", read in one match) caches what the other
-- keys say, with
--   backlog  ns until the bucket is full, as of last (µs); t the interval (ns)
--            it was priced at (a rate change reprices it, as decide.lua does)
--   leased   tokens leased out (see below) and not settled, until µs
--   x        ms when the key expires (its TTL: most writes keep it)
--   hold     0 (a tenant with a pause is decide.lua's)
--   aux      µs when the aux hash (tickets, pause) expires (0: it has); this
--            script writes 0, since it decides only without one
--   pol      'd' (the default policy, from ARGV) or "b/q/qp": the tenant's
--            own policy, whose interval is t
-- Whoever changes the policy hash, the pause or adds a ticket without going
-- through this script drops the cache, keeping "backlog:last:t:leased:until"
-- (policy.lua, ticket.lua, hold.lua; decide.lua writes none either); the
-- next decision then reads the keys (cold path). The state lives LINGER/2
-- to LINGER after its last write even when its bucket is full, so that a
-- tenant far under its limit stays hot; then it expires.
--
-- Leases: when a decision admits n tokens now, for a tenant with no quota,
-- no pause and no ticket booked, and the caller wants more, the bucket also
-- gives it up to 'lease' more tokens (no more than it refills while a lease
-- lasts, and only while it keeps half its burst), which the caller
-- spends on its own until the lease ends, ARGV[6] later. Until it ends or
-- the caller settles it, the bucket cannot refill over the tokens leased
-- out: tokens in the bucket plus tokens leased out never exceed the burst,
-- so the admissions of all callers, whenever within the lease they spend
-- them, are exactly those of one token bucket. A caller that asks again
-- before its lease ends settles it: the tokens it did not spend go back.
--
-- KEYS, four per decision i = 0, 1, ...:
--   KEYS[4i+1] -> policy hash   KEYS[4i+2] -> token bucket state ("tb")
--   KEYS[4i+3] -> quota hash    KEYS[4i+4] -> aux hash (pause, tickets)
-- ARGV[1..4] -> default policy: interval_ns, burst, quota, quota_period_us
-- ARGV[5]    -> when quotas without a period end, Unix µs (0: unknown)
-- ARGV[6]    -> how long a lease lasts, µs
-- ARGV[7+9i .. 15+9i] -> decision i: mode ('allow' or 'reserve'), n,
--   maxwait µs (0: no cap), ticket ('' none), keep ('1': record the ticket
--   even when granted now), lease (tokens wanted besides n; 0: none), then
--   the caller's previous lease, settled now: its tokens, those unspent and
--   when it was granted (Redis µs, as this script said; 0 0 0: none). A
--   lease that has ended by now is not settled: its tokens may have become
--   another lease's. With one decision, the arguments after n that say
--   none (0 or '') may be left out: fewer arguments cost Redis less.
-- Returns per decision {code, remaining tokens, wait_us, reset_us} as in
-- decide.lua's reply, then {quota remaining, quota_reset_us} when the
-- policy has a quota. code = allowed + 2*booked + 4*reason + 32*(has quota)
-- + 64*(tokens leased), or -1 (and no quota part) when the id's state is not
-- one this script knows; with tokens leased, then the time of the grant
-- (Redis µs). One decision with no quota and no lease is one integer
-- instead when it fits (2^53): code + 128*remaining + 2^27*reset_us when
-- it waits for nothing (remaining < 2^20, reset < 2^26 µs), or
-- -(2 + code + 128*wait_us + 2^30*reset_us) when nothing remains (wait and
-- reset < 2^23 µs); Redis turns a list into its reply at a cost.

local LINGER = 10000000 -- µs
local MAXBOOK = 4000000000000000 -- ns (~46 days): keeps integers exact
local HOUR = 3600000000
-- (hot path: locals, not globals; arithmetic turns digit strings into numbers)
local floor, ceil, min, max, match, fmt, byte = math.floor, math.ceil, math.min, math.max, string.match, string.format, string.byte
local call = redis.call
local tm = call('TIME')
local now = tm[1] * 1000000 + tm[2]
local out, o = {0, 0, 0, 0}, 0 -- (sized for the common single decision)

for i = 0, #KEYS / 4 - 1 do
  local pk, sk, qk, ak = KEYS[4*i+1], KEYS[4*i+2], KEYS[4*i+3], KEYS[4*i+4]
  local a = 9 * i + 7
  local n, ticket = ARGV[a+1] + 0, ARGV[a+3] or ''
  local st, t, b, q, qp, lu, le, x, hu, au, pol, was = 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, nil, nil
  local bad = false
  local v = call('GET', sk)
  if v then
    -- the common states first, in one match: no lease, pause or ticket
    local bl, last, w, xs, pb, pq, pqp
    if byte(v, -1) == 100 then -- 'd'
      bl, last, w, xs = match(v, '^(%d+):(%d+):(%d+):0:0:(%d+):0:0:d$')
      if bl then pol = 'd' end
    else
      bl, last, w, xs, pol, pb, pq, pqp = match(v, '^(%d+):(%d+):(%d+):0:0:(%d+):0:0:((%d+)/(%d+)/(%d+))$')
    end
    if not bl then
      local u, e, h, ax
      bl, last, w, u, e, xs, h, ax, pol = match(v, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(%d+):(.+)$')
      if bl then
        lu, le, hu, au = u + 0, e + 0, h + 0, ax + 0
        if pol ~= 'd' then
          pb, pq, pqp = match(pol, '^(%d+)/(%d+)/(%d+)$')
          if not pb then bad = true end
        end
      else
        -- without the cache (decide.lua, hold.lua, policy.lua... wrote it)
        bl, last, w, u, e = match(v, '^(%d+):(%d+):?(%d*):?(%d*):?(%d*)$')
        if not bl then bad = true else lu, le = tonumber(u) or 0, tonumber(e) or 0 end
      end
    end
    was = tonumber(w)
    if pol == 'd' then
      t, b, q, qp = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0, ARGV[4] + 0
    elseif pb then
      if was then t, b, q, qp = was, pb + 0, pq + 0, pqp + 0 else bad = true end
    end
    if not bad then
      x = tonumber(xs) or 0
      st = bl + 0
      local elapsed = (now - last) * 1000
      if elapsed > 0 then
        if elapsed >= st then st = 0 else st = st - elapsed end
      end
    end
  end
  if not bad and not pol then
    -- cold: read the policy
    local p = call('HMGET', pk, 't', 'b', 'q', 'qp')
    if p[1] then
      t, b, q, qp = tonumber(p[1]), tonumber(p[2]), tonumber(p[3]) or 0, tonumber(p[4]) or 0
      pol = fmt('%d/%d/%d', b, q, qp)
    else
      t, b, q, qp, pol = ARGV[1] + 0, ARGV[2] + 0, ARGV[3] + 0, ARGV[4] + 0, 'd'
    end
    au = -1 -- unknown: read below
  end
  if not bad and au ~= 0 and au <= now then
    -- when the aux hash expires (0: it has). (One we expected to have
    -- expired by now is checked too: a server whose TTLs do not follow
    -- its TIME, as miniredis's, may still have it.)
    local ttl = call('PTTL', ak)
    if ttl == -2 then au = 0 elseif ttl == -1 then au = MAXBOOK else au = now + ttl * 1000 + 1000 end
  end
  -- a pause or tickets (the aux hash), or a ticket to keep: decide.lua decides
  if not bad and (au > now or (ticket ~= '' and ARGV[a+4] == '1')) then bad = true end
  if bad then
    out[o+1], out[o+2], out[o+3], out[o+4] = -1, 0, 0, 0
    o = o + 4
  else
    if was and was ~= t and was > 0 and st > 0 then st = ceil(st / was * t) end
    -- leased tokens: the bucket does not refill over them
    if lu > 0 and le <= now then lu, le = 0, 0 end
    local dirty = false
    local sk_ = ARGV[a+6]
    if sk_ and sk_ ~= '0' and lu > 0 and now < ARGV[a+8] + ARGV[6] then
      local su = ARGV[a+7] + 0
      -- the caller settles its previous lease: su of its sk_ tokens unspent
      lu = max(0, lu - (sk_ + 0))
      if lu == 0 then le = 0 end
      st = max(0, st - su * t)
      dirty = true
    end
    if lu > 0 then st = max(st, lu * t) end
    local base = st
    local wait, reason = 0, 1
    if n > b then
      wait, reason = -1, 4
    else
      wait = st + (n - b) * t
      if wait < 0 then wait = 0 end
    end
    local used, win, qr = 0, 0, 0
    if q > 0 then
      local u = call('HMGET', qk, 'used', 'win')
      if qp > 0 then win = floor(now / qp) end
      if u[1] and tonumber(u[2]) == win then used = tonumber(u[1]) end
      -- qr: the time until the quota period ends, µs (0: unknown); see
      -- quota_reset_us in common.lua
      if qp > 0 then
        qr = (win + 1) * qp - now
      else
        local nxt = tonumber(call('HGET', qk, 'next'))
        if not nxt or nxt <= now - HOUR then nxt = ARGV[5] + 0 end
        if nxt > now then qr = nxt - now elseif nxt > now - HOUR then qr = 1000000 end
      end
      if used + n > q and wait ~= -1 then
        if qr == 0 then wait = -1 else wait = max(wait, qr * 1000) end
        reason = 2
      end
    end
    if wait == 0 then reason = 0 end

    local allowed, booked, leased, fallback = 0, 0, 0, false
    local books = ARGV[a] == 'reserve' and reason == 1 and wait <= MAXBOOK and
      (not ARGV[a+2] or ARGV[a+2] == '0' or wait <= ARGV[a+2] * 1000)
    if wait > 0 and books and ticket ~= '' then
      -- a booking under a ticket: decide.lua books it (nothing written here)
      fallback = true
    elseif wait == 0 or books then
      if wait == 0 then allowed = 1 else booked = 1 end
      st = st + n * t
      local want = ARGV[a+5]
      if want and want ~= '0' and allowed == 1 and q == 0 then
        -- at most what the bucket refills in a lease (a tenant that refills
        -- slowly gets none; an unspent lease costs no more than ttl idle),
        -- and never below half the burst left in the bucket (leases come
        -- and go while a tenant is far under its limit, and what they may
        -- waste cannot bring it to its limit)
        local room = min(floor((b * t - st) / t) - ceil(b / 2), floor(ARGV[6] * 1000 / t))
        if room > 0 then
          leased = want + 0
          if leased > room then leased = room end
          st = st + leased * t
          lu, le = lu + leased, max(le, now + ARGV[6])
        end
      end
      if q > 0 then
        used = used + n
        call('HSET', qk, 'used', fmt('%d', used), 'win', fmt('%d', win))
        if qp > 0 then
          call('PEXPIRE', qk, ceil(((win + 1) * qp - now) / 1000) + 1000)
        end
      end
      dirty, base = true, st
    end
    if dirty and not fallback then
      -- x (ms): when the key expires. It lives until its bucket is full and
      -- its lease has ended, and LINGER/2 to LINGER after its last write:
      -- most writes keep the TTL they find (cheaper than setting one)
      -- (x is later than the key's true expiry by as long as the script
      -- ran before TIME: keep it only with 2 ms to spare)
      local need = max(now + base / 1000, le)
      local keep = (x - 2) * 1000 >= need and x * 1000 >= now + LINGER / 2
      local px
      if not keep then
        px = ceil(max(need - now, LINGER) / 1000)
        x = floor(now / 1000) + px
      end
      local val
      if lu == 0 then
        val = fmt('%d:%d:%d:0:0:%d:0:0:%s', base, now, t, x, pol)
      else
        val = fmt('%d:%d:%d:%d:%d:%d:0:0:%s', base, now, t, lu, le, x, pol)
      end
      if keep then
        call('SET', sk, val, 'KEEPTTL')
      else
        call('SET', sk, val, 'PX', px)
      end
    end

    if fallback then
      out[o+1], out[o+2], out[o+3], out[o+4] = -1, 0, 0, 0
      o = o + 4
    else
    local left = floor((b * t - st) / t)
    if left < 0 then left = 0 end
    if wait > 0 then wait = ceil(wait / 1000) end
    local code = allowed + 2 * booked + 4 * reason + 64 * leased
    if q > 0 then code = code + 32 end
    out[o+1], out[o+2], out[o+3], out[o+4] = code, left, wait, ceil(st / 1000)
    o = o + 4
    if q > 0 then
      out[o+1], out[o+2] = max(0, q - used), qr
      o = o + 2
    end
    if leased > 0 then
      out[o+1] = now
      o = o + 1
    end
    end
  end
end
if o == 4 and #KEYS == 4 then
  -- one decision without a quota or a lease: one integer when it fits
  local c, l, w, r = out[1], out[2], out[3], out[4]
  if c >= 0 and w == 0 and l < 1048576 and r < 67108864 then
    return c + 128 * l + 134217728 * r
  elseif c >= 0 and l == 0 and w > 0 and w < 8388608 and r < 8388608 then
    return -(2 + c + 128 * w + 1073741824 * r)
  end
end
return out
