-- slots.lua: renew or release a call's slot on each of its ids, or count
-- the calls in flight (see slots_wait in common.lua). Appended to
-- common.lua.
--
-- KEYS    -> the ids' slots
-- ARGV[1] -> 'renew', 'release' or 'count'
-- ARGV[2] -> the holder: the name the call took its slots under
-- ARGV[3] -> renew: until how long from now, µs
-- Returns how many of the ids it held a slot on (a slot that ran out is
-- not held any more: another call may have it); count: how many slots are
-- held on the ids.

local now = now_us()
if ARGV[1] == 'count' then
  local n = 0
  for _, key in ipairs(KEYS) do n = n + redis.call('ZCOUNT', key, '(' .. now, '+inf') end
  return n
end
local held = 0
for _, key in ipairs(KEYS) do
  local L = {zk = key}
  local until_us = tonumber(redis.call('ZSCORE', key, ARGV[2]))
  if until_us and until_us > now then
    held = held + 1
    if ARGV[1] == 'renew' then
      slots_take(L, ARGV[2], now + tonumber(ARGV[3]), now)
    else
      redis.call('ZREM', key, ARGV[2])
    end
  end
end
return held
