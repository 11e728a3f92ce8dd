-- Rotates one session's refresh token, or detects the reuse of one.
-- KEYS: the user's hash, by-expiry set, by-id set, event stream.
-- ARGV: session id, presented digest, new token id, new digest, ttl ms,
--       grace ms (0 for none), revoke all on reuse ('1' or '0').
-- Returns {0, record} when rotated, {5, record} when the presented token
-- was rotated away within its grace (nothing changed), {1} when there is
-- no live session, {6} on reuse (the session, or all of the user's, deleted),
-- {7} when the session has no refresh token recorded.
local h, e, l, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, presented, token, digest = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ttl, grace, revoke_all = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7] == '1'

local now = now_ms()
local current = redis.call('HGET', h, id)
if not live(current, now) then
  return {1}
end
local version, _, expires_at, data_start, state = parse(current)
if state.cur == '' then
  return {7}
end

-- Digests compared here, not tokens: how long a comparison takes says
-- nothing about a token id (see src/store/refresh-state.ts).
if presented == state.cur then
  local data = string.sub(current, data_start, #current - state.tail)
  local tail = rotation_tail(token, now)
  local expiry = storage_expiry(now, ttl, expires_at)
  local until_ms = grace > 0 and now + grace or 0
  local next_version = digits(tonumber(version) + 1)
  local updated = record(next_version, expiry, expires_at, data .. tail,
    {cur = digest, prev = presented, prev_until = until_ms, tail = #tail})
  redis.call('HSET', h, id, updated)
  redis.call('ZADD', e, digits(expiry), id)
  -- The rotated session is live, so the keys hold at least it.
  settle(h, e, l, now, stored(e))
  emit(x, now, EVENT.ROTATED, id, next_version)
  return {0, updated}
end
if state.prev ~= '' and presented == state.prev and now <= state.prev_until then
  return {5, current}
end

-- Reuse: delete the session, or every session of the user.
local others = 0
if revoke_all then
  -- Live sessions besides this one: every live session has an entry
  -- scored by its storage expiry.
  others = redis.call('ZCOUNT', e, digits(now), '+inf') - 1
  redis.call('UNLINK', h, e, l)
else
  local left = stored(e) - forget(h, e, l, {id})
  settle(h, e, l, now, left)
end
emit(x, now, EVENT.REUSE_DETECTED, id, version)
if others > 0 then
  emit(x, now, EVENT.DELETED_BY_USER, '', '0')
end
return {6}
