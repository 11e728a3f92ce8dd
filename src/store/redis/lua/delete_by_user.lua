-- Deletes all of a user's sessions except the listed ones, atomically.
-- KEYS: user index.
-- ARGV: session key prefix, then the ids of the sessions to keep.
-- Returns the number of live sessions deleted.
local index = KEYS[1]
local session_prefix = ARGV[1]

local keep = {}
for i = 2, #ARGV do
  keep[ARGV[i]] = true
end

local deleted = 0
for _, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if not keep[id] then
    -- DEL counts only keys that still exist, so expired sessions are not counted.
    deleted = deleted + redis.call('DEL', session_prefix .. id)
    redis.call('ZREM', index, id)
  end
end
settle_index(index, now_ms())
return deleted
