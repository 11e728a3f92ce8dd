-- Moves one session's storage expiry, keeping its data and version.
-- KEYS: session key, user index.
-- ARGV: session id, ttl ms.
-- Returns {0, record}, or {1} when the session does not exist.
local key, index = KEYS[1], KEYS[2]
local id, ttl = ARGV[1], tonumber(ARGV[2])

local current = redis.call('GET', key)
if not current then
  return {1}
end
local version, expires_at, data_start = parse(current)
local now = now_ms()
local expiry = storage_expiry(now, ttl, expires_at)
local updated = record(version, expiry, expires_at, string.sub(current, data_start))
redis.call('SET', key, updated, 'PXAT', expiry)
redis.call('ZADD', index, expiry, id)
settle_index(index, now)
return {0, updated}
