-- Moves one session's storage expiry, keeping its data and version.
-- KEYS: the user's hash, by-expiry set, by-id set, event stream.
-- ARGV: session id, ttl ms.
-- Returns {0, record}, or {1} when there is no live session.
local h, e, l, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, ttl = ARGV[1], tonumber(ARGV[2])

local now = now_ms()
local current = redis.call('HGET', h, id)
if not live(current, now) then
  return {1}
end
local version, _, expires_at, data_start, state = parse(current)
local expiry = storage_expiry(now, ttl, expires_at)
local updated = record(version, expiry, expires_at, string.sub(current, data_start), state)
redis.call('HSET', h, id, updated)
redis.call('ZADD', e, digits(expiry), id)
-- The touched session is live, so the keys hold at least it.
settle(h, e, l, now, stored(e))
emit(x, now, EVENT.TOUCHED, id, version)
return {0, updated}
