-- decide.lua: decisions, each over one or more ids (a tenant, then shared
-- levels such as an upstream API), all or nothing: when one id refuses,
-- nothing is consumed anywhere. One run may carry several decisions (a
-- batch): each is decided on its own, in order, as if it ran alone.
-- Appended to common.lua and one algorithm (tokenbucket.lua, ...); run as
-- decide_all(KEYS, ARGV), by a script or as a Redis function (algorithm.go).
--
-- KEYS, five per id, the ids of each decision in turn:
--   policy hash, algorithm state, quota hash, aux hash, slots (see common.lua)
-- ARGV[1] -> the Limiter's settings, a record (see pack_record in
--   common.lua): the default policy (interval_ns, burst, quota,
--   quota_period_us, concurrency); when quotas without a period and without
--   their own recorded reset end, Unix µs (0: unknown); how long a lease
--   lasts, µs (see algo.lease); learning the upstream: how long a learned
--   rate takes to climb back by the policy's whole rate, µs (0: off)
-- ARGV[2 + 4i ..] -> decision i, four arguments:
--   mode     'allow', 'reserve', 'peek' or 'cancel'
--   ticket   '' for none. Reserve records it with the due time of the
--            tokens it books; a later allow or reserve with the same ticket
--            redeems them once they are due, without consuming again, when
--            the starts allow it (see starts_wait in common.lua): a ticket
--            redeemed later than its slot takes its turn among the calls
--            that start, and is booked a start when it must wait.
--   slot     the call's name among those in flight ('' none): on an id with
--            a concurrency limit a call that starts takes a slot under it
--            (see slots_wait in common.lua), and waits for one if none is free
--   numbers  a record (of the first two alone when the others are 0):
--     ids      how many ids (five KEYS each) it decides on
--     n        the cost in tokens (>= 1)
--     maxwait  reserve: the longest wait to book, µs (0: no cap)
--     keep     1: reserve records the ticket even when the tokens are
--              granted now (they are for a job that will only come later)
--     lease    tokens the caller would like leased besides n (0: none)
--     settle   the caller's previous lease of this id, settled now: its
--              tokens, those unspent, when Redis granted it (µs); 0 0 0: none
--     slotttl  how long the slot is held unless renewed, µs (with a slot)
-- Returns a record per decision (an array of them for several): allowed
-- (1 or 0); reason (0 none, 1 rate, 2 quota, 3 paused, 4 cost above burst,
-- 5 no slot free); remaining tokens; wait_us (0 when allowed, -1 never or
-- quota reset unknown); reset_us (until full); then, unless they are all
-- 0, 1, -1, 0, 0, 0, 0, 0 (the common case; the record stops after five):
-- booked (1 when reserve booked tokens due later, 2 when they were booked
-- under the ticket before this call); level (1-based id that decided);
-- quota remaining (-1: no quota); quota_reset_us; tokens leased; when they
-- were leased (Redis µs); slots taken (ids on which the call now holds a
-- slot).

-- the run's arguments, set by decide_all: KEYS, ARGV, the default policy,
-- and the time now
local keys, argv, def, defnext, ttl, recovery, now
-- the ids' tables (see load), and those of the decision being made, in
-- order (levels[1..ids]): both kept from run to run
local tables, levels = {}, {}
-- the settings last read: a Redis function keeps them from run to run, and
-- unpacks them again only when they change
local settings
-- a job that comes back this much (ns) after its slot, or an interval if
-- shorter, is late: a wake-up and a dequeue take less
local LATE = 50000000
-- a decision's numbers and its reply's, in full or the first ones alone
local ARGS, ARGS_SHORT = '<ddddddddd', '<dd'
local REPLY, REPLY_SHORT = '<dddddddddddd', '<ddddd'

-- load reads an id (keys[k+1..k+5]): its policy, aux hash and state.
local function load(k, ticket, settle, sk, su, sa)
  -- (a table per position, kept from run to run by a Redis function; set
  -- here: what is read before the id's state, policy, aux hash or quota
  -- sets it)
  local L = tables[k] or {}
  tables[k] = L
  L.pk, L.sk, L.qk, L.ak, L.zk = keys[k+1], keys[k+2], keys[k+3], keys[k+4], keys[k+5]
  L.aux, L.dirty, L.slotwait = true, false, 0
  algo.read(L, def, now) -- the token bucket's state may know the rest
  if L.aux then
    policy_load(L, def)
    aux_load(L, ticket, now)
    if algo.books then L.t = learned_t(L.t, L.lr, L.lc, now, recovery) end
  else
    L.hold, L.due, L.s = 0, false, false -- (no aux hash)
  end
  if settle then
    algo.load(L, now, sk, su, sa, ttl)
  else
    algo.load(L, now, 0, 0, 0, 0)
  end
  return L
end

-- decide makes the decision whose arguments start at argv[a] on the ids
-- from keys[k+1], and returns how many ids it decided on and its reply.
local function decide(a, k)
  local mode, ticket, slot = argv[a], argv[a+1], argv[a+2]
  local ids, n, maxwait, keep, want, sk, su, sa, slotttl = 0, 0, 0, 0, 0, 0, 0, 0, 0
  if #argv[a+3] == 16 then
    ids, n = unpack_record(ARGS_SHORT, argv[a+3])
  else
    ids, n, maxwait, keep, want, sk, su, sa, slotttl = unpack_record(ARGS, argv[a+3])
  end
  maxwait, keep = maxwait * 1000, keep == 1
  local redeem = ticket ~= ''
  local wait, level, reason = 0, 1, 0
  for i = 1, ids do
    local L = load(k + 5 * (i - 1), ticket, ids == 1 and sk > 0, sk, su, sa)
    L.bl = L.st -- (before a pause counts)
    if not L.due then redeem = false end
    if L.hold > 0 then algo.pause(L) end
    L.wait, L.reason = algo.wait(L, n, now), 1
    if L.s and algo.books and L.wait == 0 then
      -- jobs that came back late may have started since the bucket's
      -- tokens were counted: a call starts only when the starts allow it
      L.wait = starts_wait(starts_backlog(L.s, 0, L.t, L.b, now), L.t, L.b, n)
    end
    if L.c > 0 and slot ~= '' and mode ~= 'cancel' then
      L.slotwait = slots_wait(L, slot, now)
      if L.wait == 0 and L.slotwait > 0 then L.wait, L.reason = L.slotwait, 5 end
    end
    if L.wait == -1 then
      L.reason = 4
    elseif L.hold > 0 then
      L.wait, L.reason = math.max(L.wait, L.hold), 3
    end
    if L.q > 0 then
      quota_load(L, now)
      if L.used + n > L.q and L.wait ~= -1 then
        local r = quota_reset_us(L, now, defnext)
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

  local allowed, booked, leased = 0, 0, 0
  if redeem and mode ~= 'peek' and mode ~= 'cancel' then
    -- tokens already booked for this ticket: due yet, and not paused since?
    -- (a due time below 0 is -due of a ticket that holds its start too)
    wait, reason = 0, 0
    local late = false
    for i = 1, ids do
      local L = levels[i]
      local due = math.abs(L.due)
      local w = math.max((due - now) * 1000, L.hold)
      if w > wait then wait, level, reason = w, i, (L.hold >= w and 3 or 1) end
      -- without a start of its own, or later than its start by more than an
      -- interval (at most LATE): its turn among the starts is decided now
      if L.due >= 0 or (now - due) * 1000 > math.min(L.t, LATE) then late = true end
    end
    if wait == 0 then
      -- due: it starts when a slot is free
      for i = 1, ids do
        local L = levels[i]
        if L.slotwait > wait then wait, level, reason = L.slotwait, i, 5 end
      end
    end
    local paced = false
    if wait == 0 and late and algo.books then
      for i = 1, ids do
        local L = levels[i]
        L.sb = starts_backlog(L.s, L.bl, L.t, L.b, now)
        local w = starts_wait(L.sb, L.t, L.b, n)
        if w > wait then wait, level, reason = w, i, 1 end
      end
      if wait == 0 or mode == 'reserve' then
        for i = 1, ids do starts_take(levels[i], levels[i].sb, n, now) end
        paced = wait > 0
      end
    end
    if wait == 0 then
      allowed = 1
      for i = 1, ids do ticket_del(levels[i], ticket) end
    elseif paced then
      booked = 2 -- its start is booked: it comes back then
      local due = now + math.ceil(wait / 1000)
      for i = 1, ids do ticket_set(levels[i], ticket, -due, now) end
    else
      booked = 2 -- still booked, just not due yet
    end
  elseif mode == 'cancel' then
    -- CancelN (no ticket) gives back n. CancelTicket gives back only what the
    -- ticket holds, once: nothing where it was never booked, or was redeemed
    -- or cancelled already; and algo.give, told the booking's due time, keeps
    -- what later bookings rely on (a ticket whose start is booked, due below
    -- 0, had its tokens due long ago: it gets none back).
    for i = 1, ids do
      local L = levels[i]
      if ticket == '' or L.due then
        algo.give(L, n, now, L.due)
        if L.q > 0 and L.used > 0 then
          L.used = math.max(0, L.used - n)
          quota_store(L, now)
        end
        if L.due then ticket_del(L, ticket) end
      end
    end
    wait, reason = 0, 0
  elseif mode == 'peek' then
    if wait == 0 then allowed = 1 end
  elseif wait == 0 or (mode == 'reserve' and algo.books and (reason == 1 or reason == 3) and
      wait <= MAXBOOK and (maxwait == 0 or wait <= maxwait)) then
    -- admit now, or book tokens due in 'wait' (all ids alike)
    if wait == 0 then allowed = 1 else booked = 1 end
    local ticketed = ticket ~= '' and (booked == 1 or keep)
    local due = now
    if wait > 0 then due = now + math.ceil(wait / 1000) end
    for i = 1, ids do
      local L = levels[i]
      algo.take(L, n, now)
      if algo.books and allowed == 1 and L.s and not (keep and ticket ~= '') then
        -- a call that starts now, while starts are counted
        starts_take(L, starts_backlog(L.s, 0, L.t, L.b, now), n, now)
      elseif algo.books and ticketed and not L.s then
        -- the first booking: from now on the starts are counted, from what
        -- the bucket admitted so far (at most a burst's worth)
        starts_take(L, starts_backlog(nil, L.bl, L.t, L.b, now), 0, now)
      end
      if L.q > 0 then
        L.used = L.used + n
        quota_store(L, now)
      end
      if ticketed then ticket_set(L, ticket, due, now) end
    end
    local L = levels[1]
    if want > 0 and allowed == 1 and ids == 1 and L.q == 0 and L.c == 0 and not L.aux then
      leased = algo.lease(L, want, ttl, now)
    end
  end
  local slots = 0
  if allowed == 1 and slot ~= '' and mode ~= 'peek' and not (keep and ticket ~= '') then
    -- a call that starts now holds a slot where there is a limit
    for i = 1, ids do
      local L = levels[i]
      if L.c > 0 then
        slots_take(L, slot, now + slotttl, now)
        slots = slots + 1
      end
    end
  end
  for i = 1, ids do algo.store(levels[i], now) end

  -- report on the id that decided: the one that refused, or the one with
  -- the fewest tokens left
  if wait == 0 then level = 1 end
  for i = 1, ids do
    local L = levels[i]
    L.left, L.reset = algo.report(L, now)
    if wait == 0 and L.left < levels[level].left then level = i end
  end
  local L = levels[level]
  local qrem, qreset = -1, 0
  if L.q > 0 then
    qrem = math.max(0, L.q - L.used)
    qreset = quota_reset_us(L, now, defnext)
  end
  -- (µs, rounded up: inline, since on this path a function call costs more
  -- than the arithmetic)
  local r = L.reset / 1000
  local reset = r - r % 1
  if reset < r then reset = reset + 1 end
  if wait > 0 then
    local w = wait / 1000
    wait = w - w % 1
    if wait < w then wait = wait + 1 end
  end
  local f = REPLY
  if booked == 0 and level == 1 and qrem == -1 and leased == 0 and slots == 0 then f = REPLY_SHORT end
  return ids, pack_record(f, allowed, reason, L.left, wait, reset, booked, level, qrem, qreset, leased,
    now, slots)
end

-- decide_all makes every decision of the run and returns their replies.
local function decide_all(k, a)
  keys, argv = k, a
  if a[1] ~= settings then
    local t, b, q, qp, c
    t, b, q, qp, c, defnext, ttl, recovery = unpack_record('<dddddddd', a[1])
    def, settings = {t, b, q, qp, c}, a[1]
  end
  now = now_us()
  local ids, r = decide(2, 0)
  if #a == 5 then return r end
  local out, first = {r}, 5 * ids
  for at = 6, #a, 4 do
    ids, out[#out + 1] = decide(at, first)
    first = first + 5 * ids
  end
  return out
end
