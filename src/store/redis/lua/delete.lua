-- Deletes one session, conditionally on its stored version.
-- KEYS: session key, user index.
-- ARGV: session id, expected version ('' for unconditional).
-- Returns {0, 1} when deleted, {0, 0} when there was no session, {2} on a
-- version mismatch.
local key, index = KEYS[1], KEYS[2]
local id, expected = ARGV[1], ARGV[2]

local current = redis.call('GET', key)
if current and expected ~= '' and expected ~= parse(current) then
  return {2}
end
if current then
  redis.call('DEL', key)
end
redis.call('ZREM', index, id)
settle_index(index, now_ms())
return {0, current and 1 or 0}
