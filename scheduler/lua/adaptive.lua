-- adaptive.lua: one additive-increase, multiplicative-decrease step of a
-- tenant's rate, atomic per tenant.
--
-- KEYS[1] -> <prefix>:adaptive:<tenant>, a hash: rate, holds, fire
-- ARGV[1] -> the tenant's hold count now (throttle Limiter.HoldCount)
-- ARGV[2] -> this step's fire time, Unix milliseconds
-- ARGV[3] -> the tenant's rate now (its policy); the start on the first step
-- ARGV[4] -> min rate
-- ARGV[5] -> max rate
-- ARGV[6] -> step, added after a quiet interval
-- ARGV[7] -> factor, multiplied after a 429
-- ARGV[8] -> TTL of the state, seconds
--
-- Returns {rate, verdict}: the new rate as a string, and
--   "start" first step: the hold count becomes the baseline, the rate is
--           the current one within bounds
--   "raise" no hold since the last step: rate + step, at most max
--   "cut"   held since the last step: rate * factor, at least min
--   "again" the step for this fire time ran already (a retried task): its
--           rate, unchanged, for the caller to store again
--   "stale" a step for a later fire time ran already: nothing changed
local holds = tonumber(ARGV[1])
local fire = tonumber(ARGV[2])
local lo, hi = tonumber(ARGV[4]), tonumber(ARGV[5])

local s = redis.call('HMGET', KEYS[1], 'rate', 'holds', 'fire')
local rate, verdict
if not s[1] then
  rate, verdict = tonumber(ARGV[3]), 'start'
elseif tonumber(s[3]) == fire then
  return {s[1], 'again'}
elseif tonumber(s[3]) > fire then
  return {s[1], 'stale'}
elseif holds > tonumber(s[2]) then
  rate, verdict = tonumber(s[1]) * tonumber(ARGV[7]), 'cut'
else
  rate, verdict = tonumber(s[1]) + tonumber(ARGV[6]), 'raise'
end
if rate < lo then rate = lo end
if rate > hi then rate = hi end

local r = string.format('%.17g', rate)
redis.call('HSET', KEYS[1], 'rate', r, 'holds', ARGV[1], 'fire', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[8])
return {r, verdict}
