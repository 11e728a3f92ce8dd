-- Inserts or replaces one session, conditionally on its stored version.
-- KEYS: the user's hash, by-expiry set, by-id set, event stream.
-- ARGV: session id, data, ttl ms, expires_at ms (0 for none), expected version
--       ('' for unconditional), per-user cap (0 for none), the digest of the
--       session's refresh token id ('' for none).
-- Returns {0, version, storage expiry}, or {status}: 1 not found, 2 version
-- mismatch, 3 already exists, 4 expires_at not in the future.
local h, e, l, x = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, data = ARGV[1], ARGV[2]
local ttl, expires_at = tonumber(ARGV[3]), tonumber(ARGV[4])
local expected, cap, digest = ARGV[5], tonumber(ARGV[6]), ARGV[7]

local now = now_ms()
if expires_at > 0 and expires_at <= now then
  return {4}
end

local current = redis.call('HGET', h, id)
if not live(current, now) then
  current = false
end
local version = '1'
local state = {cur = digest, prev = '', prev_until = 0, tail = 0}
if current then
  local stored_version, _, _, _, stored_state = parse(current)
  if expected == '0' then
    return {3}
  end
  if expected ~= '' and expected ~= stored_version then
    return {2}
  end
  version = digits(tonumber(stored_version) + 1)
  -- The same refresh token: a grace still running keeps running.
  if stored_state.cur == digest then
    state.prev, state.prev_until = stored_state.prev, stored_state.prev_until
  end
elseif expected ~= '' and expected ~= '0' then
  return {1}
end

-- What goes before the write: expired sessions (this id's own expired
-- entry among them), and the live ones that expire soonest when a new
-- session would exceed the cap. The two never overlap.
local dead = expired(e, now)
local victims = {}
if not current and cap > 0 then
  -- Live sessions only (an expired entry of this id among the rest is not
  -- counted); ZCOUNT is O(log n).
  local excess = redis.call('ZCOUNT', e, digits(now), '+inf') - cap + 1
  if excess > 0 then
    -- The live sessions that expire soonest; this one is not among them yet.
    victims = redis.call('ZRANGE', e, digits(now), '+inf', 'BYSCORE', 'LIMIT', 0,
      math.min(excess, EVICT_BATCH))
  end
end
-- Removing all the user holds and writing the keys again cannot be done
-- where they cannot be created (see common.lua): ask before any change.
-- (Only a write that removes something can empty the keys: the count is
-- read only then.)
local removing = #dead + #victims
if removing > 0 and removing >= stored(e) and not can_create_keys(h) then
  return try_again()
end
if #dead > 0 then
  forget(h, e, l, dead)
end
if #victims > 0 then
  local records = redis.call('HMGET', h, unpack(victims))
  forget(h, e, l, victims)
  for i, victim in ipairs(victims) do
    emit(x, now, EVENT.EVICTED, victim, parse(records[i]) or '0')
  end
end

local expiry = storage_expiry(now, ttl, expires_at)
redis.call('HSET', h, id, record(version, expiry, expires_at, data, state))
redis.call('ZADD', e, digits(expiry), id)
if not current then
  redis.call('ZADD', l, 0, id)
end
expire_keys(h, e, l, now)
emit(x, now, EVENT.UPSERTED, id, version)
return {0, version, expiry}
