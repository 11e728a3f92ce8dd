-- Deletes all of a user's sessions except the listed ones, atomically.
-- KEYS: the user's hash, by-expiry set, by-id set, event stream.
-- ARGV: the ids of the sessions to keep.
-- Returns the number of live sessions deleted.
--
-- O(1) in the user's sessions: the three keys are UNLINKed (Redis frees
-- them in a background thread) and the kept sessions written back, so the
-- cost is that of the ids to keep. Nothing is left to clean up afterwards.
local h, e, l, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]

local now = now_ms()
local kept = {}
local seen = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if not seen[id] then
    seen[id] = true
    local current = redis.call('HGET', h, id)
    if live(current, now) then
      kept[#kept + 1] = {id, current}
    end
  end
end

-- The kept sessions are written back into keys this script removes: ask
-- whether it may before removing anything (see common.lua).
if #kept > 0 and not can_create_keys(h) then
  return try_again()
end
-- Every live session has an entry scored by its storage expiry, so this
-- counts exactly the live ones, in O(log n).
local deleted = redis.call('ZCOUNT', e, digits(now), '+inf') - #kept
redis.call('UNLINK', h, e, l)
for _, session in ipairs(kept) do
  local id, current = session[1], session[2]
  local _, expiry = parse(current)
  redis.call('HSET', h, id, current)
  redis.call('ZADD', e, digits(expiry), id)
  redis.call('ZADD', l, 0, id)
end
-- Nothing kept: the keys are gone, and must not be named again.
if #kept > 0 then
  expire_keys(h, e, l, now)
end
if deleted > 0 then
  local kept_ids = {}
  for i, session in ipairs(kept) do
    kept_ids[i] = session[1]
  end
  emit(x, now, EVENT.DELETED_BY_USER, '', '0', kept_ids)
end
return deleted
