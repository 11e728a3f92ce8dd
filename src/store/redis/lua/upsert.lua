-- Inserts or replaces one session, conditionally on its stored version.
-- KEYS: session key, user index.
-- ARGV: session id, data, ttl ms, expires_at ms (0 for none), expected version
--       ('' for unconditional), per-user cap (0 for none), session key prefix.
-- Returns {0, version, storage expiry}, or {status}: 1 not found, 2 version
-- mismatch, 3 already exists, 4 expires_at not in the future.
local key, index = KEYS[1], KEYS[2]
local id, data = ARGV[1], ARGV[2]
local ttl, expires_at = tonumber(ARGV[3]), tonumber(ARGV[4])
local expected, cap, session_prefix = ARGV[5], tonumber(ARGV[6]), ARGV[7]

local now = now_ms()
if expires_at > 0 and expires_at <= now then
  return {4}
end

local current = redis.call('GET', key)
local version = '1'
if current then
  local stored_version = parse(current)
  if expected == '0' then
    return {3}
  end
  if expected ~= '' and expected ~= stored_version then
    return {2}
  end
  version = digits(tonumber(stored_version) + 1)
elseif expected ~= '' and expected ~= '0' then
  return {1}
end

local expiry = storage_expiry(now, ttl, expires_at)
redis.call('SET', key, record(version, expiry, expires_at, data), 'PXAT', expiry)

prune_index(index, now)
if not current then
  -- A stale entry of this id must not count against the cap.
  redis.call('ZREM', index, id)
  if cap > 0 then
    local excess = redis.call('ZCARD', index) - cap + 1
    if excess > 0 then
      -- The entries that expire soonest; the new session is not in the index yet.
      local victims = redis.call('ZRANGE', index, 0, excess - 1)
      for _, victim in ipairs(victims) do
        redis.call('DEL', session_prefix .. victim)
      end
      redis.call('ZREMRANGEBYRANK', index, 0, excess - 1)
    end
  end
end
redis.call('ZADD', index, expiry, id)
expire_index(index)
return {0, version, expiry}
