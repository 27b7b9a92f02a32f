-- dropcache.lua: prepended to the scripts that change what lean.lua caches
-- in a token bucket's state (the policy, tickets) without deciding.

-- drop_cache rewrites a token bucket state
-- "backlog:last:t:leased:until:x:hold:aux:pol" as "backlog:last:t:leased:until",
-- keeping its TTL, so that the next decision reads the policy and aux
-- hashes again.
local function drop_cache(key)
  local v = redis.call('GET', key)
  if not v then return end
  local head = string.match(v, '^(%d+:%d+:%d+:%d+:%d+):%d+:%d+:%d+:.+$')
  if not head then return end
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then
    redis.call('SET', key, head, 'PX', ttl)
  else
    redis.call('SET', key, head)
  end
end
