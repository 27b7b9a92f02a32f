-- shadow.lua: a worker in shadow mode says it is running, and adds what it
-- would have throttled to the counts by tenant.
--
-- KEYS[1] -> zset of the workers in shadow: member a worker's id, score when
--            its entry runs out (Redis time, Unix ms)
-- KEYS[2] -> hash of would-be throttles: tenant -> count; "\0since" -> when
--            counting began (Unix ms); "\0others" -> the count of tenants
--            past the most counted by name
-- ARGV[1] -> the worker's id
-- ARGV[2] -> how long its entry lasts unless written again, ms (0: remove
--            it, the worker stops)
-- ARGV[3] -> how long the counts are kept after the last run of this
--            script, ms
-- ARGV[4] -> the most tenants counted by name
-- ARGV[5] -> would-be throttles of tenants the worker did not count by
--            name (past its own most), added to "\0others"
-- ARGV[6..] -> tenant, count pairs to add
-- Returns the number of workers in shadow now, this one included while it
-- runs.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl, keep, most = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ttl > 0 then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
local live = redis.call('ZCARD', KEYS[1])
if live > 0 then
  redis.call('PEXPIRE', KEYS[1], redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')[2] - now)
end

local others = tonumber(ARGV[5])
if #ARGV > 5 or others > 0 or redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HSETNX', KEYS[2], '\0since', now)
  local named = redis.call('HLEN', KEYS[2]) - 1 - redis.call('HEXISTS', KEYS[2], '\0others')
  for i = 6, #ARGV, 2 do
    local tenant, n = ARGV[i], tonumber(ARGV[i+1])
    if redis.call('HEXISTS', KEYS[2], tenant) == 1 then
      redis.call('HINCRBY', KEYS[2], tenant, n)
    elseif named < most then
      redis.call('HINCRBY', KEYS[2], tenant, n)
      named = named + 1
    else
      others = others + n
    end
  end
  if others > 0 then redis.call('HINCRBY', KEYS[2], '\0others', others) end
  redis.call('PEXPIRE', KEYS[2], keep)
end
return live
