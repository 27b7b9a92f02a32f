-- decide.lua: one decision over one or more ids (a tenant, then shared
-- levels such as an upstream API), all or nothing: when one id refuses,
-- nothing is consumed anywhere. Appended to common.lua and one algorithm.
--
-- KEYS, four per id i = 0, 1, ...:
--   KEYS[4i+1] -> policy hash       KEYS[4i+2] -> algorithm state
--   KEYS[4i+3] -> quota hash        KEYS[4i+4] -> aux hash (pause, tickets,
--                                                        starts)
-- ARGV[1] -> mode: 'allow', 'reserve', 'peek' or 'cancel'
-- ARGV[2] -> n, the cost in tokens (>= 1)
-- ARGV[3] -> reserve: the longest wait to book, µs (0: no cap)
-- ARGV[4] -> ticket ('' for none). Reserve records it with the due time of
--            the tokens it books; a later allow or reserve with the same
--            ticket redeems them once they are due, without consuming again,
--            when the starts allow it (see starts_wait in common.lua): a
--            ticket redeemed later than its slot takes its turn among the
--            calls that start, and is booked a start when it must wait.
-- ARGV[5..8] -> default policy: interval_ns, burst, quota, quota_period_us
-- ARGV[9] -> when quotas without a period and without their own recorded
--            reset end, Unix µs (0: unknown)
-- ARGV[10] -> '1': reserve records the ticket even when the tokens are
--            granted now (they are for a job that will only come later)
-- ARGV[11] -> learning the upstream: how long a learned rate takes to climb
--            back by the policy's whole rate, µs (0: learning off; see
--            learned_t in common.lua)
-- Returns {allowed (1 or 0), remaining tokens, wait_us (0 when allowed,
--   -1 never / quota reset unknown), reset_us (until full), quota remaining
--   (-1: no quota), quota_reset_us, level (1-based id that decided),
--   reason (0 none, 1 rate, 2 quota, 3 paused, 4 cost above burst),
--   booked (1 when reserve booked tokens due later; 2 when they were
--   booked under the ticket before this call)}

local mode, n = ARGV[1], tonumber(ARGV[2])
local maxwait, ticket = tonumber(ARGV[3]) * 1000, ARGV[4]
local def = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local defnext = tonumber(ARGV[9]) or 0
local keep = ARGV[10] == '1'
local recovery = tonumber(ARGV[11]) or 0
local now = now_us()
local MAXBOOK = 4000000000000000 -- ns (~46 days): keeps integers exact
-- a job that comes back this much (ns) after its slot, or an interval if
-- shorter, is late: a wake-up and a dequeue take less
local LATE = 50000000

local levels, redeem = {}, ticket ~= ''
local wait, level, reason = 0, 1, 0
for i = 1, #KEYS / 4 do
  local L = {pk = KEYS[4*i-3], sk = KEYS[4*i-2], qk = KEYS[4*i-1], ak = KEYS[4*i]}
  L.t, L.b, L.q, L.qp = policy(L.pk, def)
  L.hold, L.due, L.s, L.lr, L.lc = aux_load(L.ak, ticket, now)
  if algo.books then L.t = learned_t(L.t, L.lr, L.lc, now, recovery) end
  L.st = algo.load(L.sk, L.t, L.b, now)
  L.bl = L.st -- (before a pause counts)
  if not L.due then redeem = false end
  if L.hold > 0 then L.st = algo.pause(L.st, L.t, L.b, L.hold) end
  L.wait, L.reason = algo.wait(L.sk, L.st, L.t, L.b, n, now), 1
  if L.s and algo.books and L.wait == 0 then
    -- jobs that came back late may have started since the bucket's
    -- tokens were counted: a call starts only when the starts allow it
    L.wait = starts_wait(starts_backlog(L.s, 0, L.t, L.b, now), L.t, L.b, n)
  end
  if L.wait == -1 then
    L.reason = 4
  elseif L.hold > 0 then
    L.wait, L.reason = math.max(L.wait, L.hold), 3
  end
  if L.q > 0 then
    L.used, L.win = quota_load(L.qk, L.qp, now)
    if L.used + n > L.q and L.wait ~= -1 then
      local r = quota_reset_us(L.qk, L.qp, L.win, now, defnext)
      if r == 0 then L.wait = -1 else L.wait = math.max(L.wait, r * 1000) end
      L.reason = 2
    end
  end
  if L.wait == 0 then L.reason = 0 end
  levels[i] = L
  if wait ~= -1 and (L.wait == -1 or L.wait > wait) then
    wait, level, reason = L.wait, i, L.reason
  end
end

local allowed, booked = 0, 0
if redeem and mode ~= 'peek' and mode ~= 'cancel' then
  -- tokens already booked for this ticket: due yet, and not paused since?
  -- (a due time below 0 is -due of a ticket that holds its start too)
  wait, reason = 0, 0
  local late = false
  for i, L in ipairs(levels) do
    local due = math.abs(L.due)
    local w = math.max((due - now) * 1000, L.hold)
    if w > wait then wait, level, reason = w, i, (L.hold >= w and 3 or 1) end
    -- without a start of its own, or later than its start by more than an
    -- interval (at most LATE): its turn among the starts is decided now
    if L.due >= 0 or (now - due) * 1000 > math.min(L.t, LATE) then late = true end
  end
  local paced = false
  if wait == 0 and late and algo.books then
    for i, L in ipairs(levels) do
      L.sb = starts_backlog(L.s, L.bl, L.t, L.b, now)
      local w = starts_wait(L.sb, L.t, L.b, n)
      if w > wait then wait, level, reason = w, i, 1 end
    end
    if wait == 0 or mode == 'reserve' then
      for _, L in ipairs(levels) do L.s = starts_take(L.ak, L.sb, L.t, n, now) end
      paced = wait > 0
    end
  end
  if wait == 0 then
    allowed = 1
    for _, L in ipairs(levels) do ticket_del(L.ak, ticket) end
  elseif paced then
    booked = 2 -- its start is booked: it comes back then
    local due = now + math.ceil(wait / 1000)
    for _, L in ipairs(levels) do redis.call('HSET', L.ak, 'k:' .. ticket, fmt(-due)) end
  else
    booked = 2 -- still booked, just not due yet
  end
elseif mode == 'cancel' then
  -- CancelN (no ticket) gives back n. CancelTicket gives back only what the
  -- ticket holds, once: nothing where it was never booked, or was redeemed
  -- or cancelled already; and algo.give, told the booking's due time, keeps
  -- what later bookings rely on (a ticket whose start is booked, due below
  -- 0, had its tokens due long ago: it gets none back).
  for _, L in ipairs(levels) do
    if ticket == '' or L.due then
      L.st = algo.give(L.sk, L.st, L.t, L.b, n, now, L.due)
      if L.q > 0 and L.used > 0 then quota_store(L.qk, math.max(0, L.used - n), L.win, L.qp, now) end
      if L.due then ticket_del(L.ak, ticket) end
    end
  end
  wait, reason = 0, 0
elseif mode == 'peek' then
  if wait == 0 then allowed = 1 end
elseif (wait == 0 or (mode == 'reserve' and algo.books and
    (reason == 1 or reason == 3) and wait <= MAXBOOK and (maxwait == 0 or wait <= maxwait))) then
  -- admit now, or book tokens due in 'wait' (all ids alike)
  if wait == 0 then allowed = 1 else booked = 1 end
  local due = now + math.ceil(wait / 1000)
  for _, L in ipairs(levels) do
    L.st = algo.take(L.sk, L.st, L.t, L.b, n, now)
    if algo.books and allowed == 1 and L.s and not (keep and ticket ~= '') then
      -- a call that starts now, while starts are counted
      L.s = starts_take(L.ak, starts_backlog(L.s, 0, L.t, L.b, now), L.t, n, now)
    elseif algo.books and ticket ~= '' and (booked == 1 or keep) and not L.s then
      -- the first booking: from now on the starts are counted, from what
      -- the bucket admitted so far (at most a burst's worth)
      L.s = starts_take(L.ak, starts_backlog(nil, L.bl, L.t, L.b, now), L.t, 0, now)
    end
    if L.q > 0 then
      L.used = L.used + n
      quota_store(L.qk, L.used, L.win, L.qp, now)
    end
    if ticket ~= '' and (booked == 1 or keep) then
      ticket_add(L.ak, ticket, due)
      aux_extend(L.ak, due, now)
    end
  end
end

-- report on the id that decided: the one that refused, or the one with the
-- fewest tokens left
if wait == 0 then level = 1 end
local rep = {}
for i, L in ipairs(levels) do
  rep[i] = {algo.report(L.sk, L.st, L.t, L.b, now)}
  if wait == 0 and rep[i][1] < rep[level][1] then level = i end
end
local L = levels[level]
local rem, reset, qrem, qreset = rep[level][1], rep[level][2], -1, 0
if L.q > 0 then
  qrem = math.max(0, L.q - L.used)
  qreset = quota_reset_us(L.qk, L.qp, L.win, now, defnext)
end

local wait_us = wait
if wait > 0 then wait_us = math.ceil(wait / 1000) end
return {allowed, rem, wait_us, math.ceil(reset / 1000), qrem, qreset, level, reason, booked}
