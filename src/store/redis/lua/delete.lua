-- Deletes one session, conditionally on its stored version.
-- KEYS: the user's hash, by-expiry set, by-id set, event stream.
-- ARGV: session id, expected version ('' for unconditional).
-- Returns {0, 1} when deleted, {0, 0} when there was no live session, {2} on
-- a version mismatch.
local h, e, l, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, expected = ARGV[1], ARGV[2]

local now = now_ms()
local left = stored(e)
local current = redis.call('HGET', h, id)
if not live(current, now) then
  current = false
end
if current and expected ~= '' and expected ~= parse(current) then
  return {2}
end
left = left - forget(h, e, l, {id})
settle(h, e, l, now, left)
if current then
  emit(x, now, EVENT.DELETED, id, parse(current) or '0')
end
return {0, current and 1 or 0}
