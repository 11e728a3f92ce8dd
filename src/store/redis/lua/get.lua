-- Reads one live session.
-- KEYS: the user's hash.
-- ARGV: session id.
-- Returns the record, or nil when there is no live session. A script rather
-- than an HGET because an expired session may still sit in the hash (see
-- common.lua) and only the server's clock may say it has expired.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if live(current, now_ms()) then
  return current
end
return false
