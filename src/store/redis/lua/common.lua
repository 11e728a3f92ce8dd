-- Shared by every script (prepended to each when it is registered).
--
-- A user's sessions live in three keys that share the user's hash tag:
--   h  a hash: session id -> a record (see parse and record below):
--      "2|<version>|<storage expiry ms>|<expires_at ms or 0>|<refresh state>|<data>"
--   e  a sorted set of the same ids scored by storage expiry (pruning,
--      eviction, the keys' TTL, DeleteByUser's count)
--   l  a sorted set of the same ids, all scored 0, so that ZRANGE BYLEX pages
--      through them in byte-wise order in O(log n + page)
-- Every script keeps the three holding the same ids. A session is live
-- while now <= its storage expiry, which is how Redis expires keys set with
-- PXAT; an expired session stays in the keys, unreadable, until a bounded
-- prune removes it or the user's keys expire.
--
-- Nothing here is O(a user's sessions): a script's work is bounded by its
-- page, its batch constants and its arguments, so a user with 10^6 sessions
-- costs Redis no more per call than a user with 10.

-- Redis 6.2 replicates scripts verbatim unless told otherwise, and a script
-- that writes after reading TIME must be replicated by its effects; Redis 7
-- always does that and keeps this call as a no-op.
if redis.replicate_commands then
  redis.replicate_commands()
end

-- The most expired sessions one write removes. Sessions that expire
-- together (a whole fleet's logins, an hour after a deploy) would otherwise
-- be removed by one unbounded call; 100 entries cost Redis about 0.3 ms,
-- and every write removes more than the one it may add.
local PRUNE_BATCH = 100

-- The most sessions one insert evicts to get under the per-user cap. One is
-- enough unless the cap was lowered below what users already hold; such a
-- user then shrinks by this many per insert instead of in one long call.
local EVICT_BATCH = 100

-- The current time in Unix milliseconds, from the Redis server's clock: the
-- one clock every replica of the service agrees on.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers as decimal digits (tostring would switch to exponent notation).
local function digits(n)
  return string.format('%d', n)
end

-- Parses a record: version (string), storage expiry (number), expires_at
-- (number, 0 for none), the position where its data starts, and its
-- refresh state: {cur, prev, prev_until, tail} (the digests of the current
-- and previous refresh token ids, "" for none; until when the previous one
-- is accepted, Unix ms, 0 for not at all; how many bytes at the end of the
-- data the last rotation appended). Records of format 1, written before
-- refresh tokens were recorded, have an empty state.
local function parse(record)
  local version, storage_expiry, expires_at, cur, prev, prev_until, tail, data_start =
    string.match(record, '^2|(%d+)|(%d+)|(%d+)|([%w_-]*)|([%w_-]*)|(%d+)|(%d+)|()')
  if version then
    return version, tonumber(storage_expiry), tonumber(expires_at), data_start,
      {cur = cur, prev = prev, prev_until = tonumber(prev_until), tail = tonumber(tail)}
  end
  version, storage_expiry, expires_at, data_start =
    string.match(record, '^1|(%d+)|(%d+)|(%d+)|()')
  return version, tonumber(storage_expiry), tonumber(expires_at), data_start,
    {cur = '', prev = '', prev_until = 0, tail = 0}
end

-- A record of format 2 (see parse); `state` nil for none.
local function record(version, storage_expiry, expires_at, data, state)
  state = state or {cur = '', prev = '', prev_until = 0, tail = 0}
  return '2|' .. version .. '|' .. digits(storage_expiry) .. '|' .. digits(expires_at) .. '|'
    .. state.cur .. '|' .. state.prev .. '|' .. digits(state.prev_until) .. '|'
    .. digits(state.tail) .. '|' .. data
end

-- A non-negative integer as a protobuf varint.
local function varint(n)
  local bytes = {}
  repeat
    local low = n % 128
    n = (n - low) / 128
    bytes[#bytes + 1] = string.char(n > 0 and low + 128 or low)
  until n == 0
  return table.concat(bytes)
end

-- What a rotation appends to a session's data: Session fields 3
-- (refresh_token_id) and 5 (refreshed_at, seconds and nanos both written
-- even when 0), which a protobuf parser reads over the earlier ones. The
-- same bytes as rotationTail in src/store/refresh-state.ts.
local function rotation_tail(token, now)
  local nanos = (now % 1000) * 1000000
  local timestamp = '\8' .. varint((now - now % 1000) / 1000) .. '\16' .. varint(nanos)
  return '\26' .. varint(#token) .. token .. '\42' .. varint(#timestamp) .. timestamp
end

-- Whether a record read from the hash (false when absent) is a live session.
-- One that does not parse counts as live, so that it reaches the service's
-- decoder and is reported as corrupt rather than passed over as absent.
local function live(current, now)
  if not current then
    return false
  end
  local storage_expiry = tonumber(string.match(current, '^[12]|%d+|(%d+)|'))
  return storage_expiry == nil or now <= storage_expiry
end

-- min(now + ttl, expires_at), where expires_at 0 means no absolute end.
local function storage_expiry(now, ttl, expires_at)
  local expiry = now + ttl
  if expires_at > 0 and expires_at < expiry then
    return expires_at
  end
  return expiry
end

-- On a Redis Cluster whose slot is migrating, Redis checks every command a
-- script runs, not only the script's declared keys: a command that names a
-- key missing at that moment is redirected, ASK on the node the slot leaves
-- (for any such key) and TRYAGAIN on the node it goes to (for several keys
-- at once), and the script ends there with its earlier writes done. Redis
-- deletes a hash or sorted set once it is empty, so a script never names a
-- key after it may have emptied it (it counts what the keys hold, see
-- settle), and never writes again keys it emptied without asking
-- can_create_keys first, before its first write. A script that runs at all
-- during a migration found all three keys on its node (Redis redirects it
-- otherwise before it starts), so what it finds at its start is safe.

-- How many sessions, live or expired, the user's keys hold (0: no keys).
local function stored(e)
  return redis.call('ZCOUNT', e, '-inf', '+inf')
end

-- Whether this script may write keys that do not exist: always, except
-- on the node a Cluster slot is migrating away from, which redirects any
-- command naming a key it lacks (see above). A key of the user's hash tag
-- that nothing ever writes tells which node this is; redis.pcall returns
-- the redirection rather than ending the script.
local function can_create_keys(h)
  local reply = redis.pcall('HGET', string.sub(h, 1, -2) .. 'never-written', 'x')
  return type(reply) ~= 'table'
end

-- The reply that makes the client send the script again shortly (as Redis
-- answers a command whose keys are split by a migration): for a write that
-- must empty the user's keys and write them again where it cannot.
local function try_again()
  return redis.error_reply("TRYAGAIN the user's keys are being migrated")
end

-- Removes sessions (a non-empty list of ids) from all three keys; returns
-- how many were there.
local function forget(h, e, l, ids)
  redis.call('HDEL', h, unpack(ids))
  local removed = redis.call('ZREM', e, unpack(ids))
  redis.call('ZREM', l, unpack(ids))
  return removed
end

-- Up to PRUNE_BATCH expired sessions, those that expired first.
local function expired(e, now)
  return redis.call('ZRANGE', e, '-inf', '(' .. digits(now), 'BYSCORE', 'LIMIT', 0, PRUNE_BATCH)
end

-- Makes the user's keys (which must exist) expire with their longest-lived
-- session, so an idle user's keys disappear on their own. When none is
-- live they go now, by UNLINK: Redis frees a large value in a background
-- thread, where a PEXPIREAT in the past or a DEL would free it inside this
-- script.
local function expire_keys(h, e, l, now)
  local last = redis.call('ZRANGE', e, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) >= now then
    redis.call('PEXPIREAT', h, last[2])
    redis.call('PEXPIREAT', e, last[2])
    redis.call('PEXPIREAT', l, last[2])
  else
    redis.call('UNLINK', h, e, l)
  end
end

-- Prunes expired sessions and sets the keys' expiry, given how many
-- sessions the keys hold now (`left`): none, and the keys are gone and
-- must not be named again.
local function settle(h, e, l, now, left)
  if left > 0 then
    local dead = expired(e, now)
    if #dead > 0 then
      left = left - forget(h, e, l, dead)
    end
  end
  if left > 0 then
    expire_keys(h, e, l, now)
  end
end

-- Session events (see src/store/session-events.ts). Every change to a
-- user's sessions is recorded, by the script that makes it, in the user's
-- event log x (same hash tag as h, e and l), so that no event is reported
-- that did not happen and none is missed. A script that changes nothing
-- records nothing. Expiry is not an event.
--
-- The log is a list: a header, then one entry per event, oldest first.
--   header  "!<id of the last event dropped, 0-0 for none>"
--   entry   "<id>|<type>|<version>|<ids>"
-- where an id is "<ms>-<seq>" (the server's clock, then a sequence within
-- the millisecond) and <ids> is the session id, then for DELETED_BY_USER
-- the ids it kept, each as "<length>:<id>". A list rather than a Redis
-- stream: a stream preallocates about 4 KB for its first entry, which
-- for users with one session would multiply Redis' memory per session by
-- ten; a short list takes a few hundred bytes. The header is how a reader
-- learns that events after its cursor were dropped (see events.lua).
--
-- EVENT_RETENTION_MS and EVENT_RETENTION_COUNT are the server's settings,
-- written above this file when the scripts are registered.

-- The type codes of the entries.
local EVENT = {
  UPSERTED = 'u',
  TOUCHED = 't',
  DELETED = 'd',
  DELETED_BY_USER = 'a',
  ROTATED = 'r',
  REUSE_DETECTED = 'x',
  EVICTED = 'e',
}

-- The most entries one event drops for retention: one in a steady state,
-- more only after EVENT_RETENTION_COUNT was lowered or a user was quiet
-- for longer than EVENT_RETENTION.
local EVENT_TRIM_BATCH = 100

-- Ids as "<length>:<id>" one after another: any bytes may appear in an id.
local function encode_ids(ids)
  local parts = {}
  for i, id in ipairs(ids) do
    parts[i] = #id .. ':' .. id
  end
  return table.concat(parts)
end

-- The ms and seq of an entry's id (or of an id), as numbers.
local function event_position(entry)
  local ms, seq = string.match(entry, '^(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end

-- Records one event in log x and tells the process watching the user
-- (SPUBLISH on the log's own name: a sharded channel in the user's slot).
-- event_type is one of EVENT; session_id is '' and version '0' for
-- DELETED_BY_USER, whose `kept` lists the ids of the live sessions it kept
-- (omit it otherwise); version is the session's version after the change,
-- or when it was removed, as a string of digits. Returns the event's id.
local function emit(x, now, event_type, session_id, version, kept)
  -- Events are off: no log, no message.
  if EVENT_RETENTION_COUNT == 0 then
    return nil
  end
  local last = redis.call('LINDEX', x, -1)
  local ms, seq = now, 0
  if last then
    -- The header alone (a log whose events were all dropped) names the
    -- last id too: ids never go back.
    local last_ms, last_seq = event_position(string.match(last, '^!?(.*)'))
    if last_ms >= now then
      ms, seq = last_ms, last_seq + 1
    end
  else
    redis.call('RPUSH', x, '!0-0')
  end
  local id = digits(ms) .. '-' .. digits(seq)
  local ids = {session_id}
  for _, kept_id in ipairs(kept or {}) do
    ids[#ids + 1] = kept_id
  end
  local length = redis.call('RPUSH', x, id .. '|' .. event_type .. '|' .. version .. '|' .. encode_ids(ids))
  -- What retention drops from the front: past EVENT_RETENTION_COUNT, then
  -- older than EVENT_RETENTION (the event just written is neither).
  local drop = math.min(math.max(length - 1 - EVENT_RETENTION_COUNT, 0), EVENT_TRIM_BATCH)
  local cutoff = now - EVENT_RETENTION_MS
  while drop < EVENT_TRIM_BATCH do
    local entry = redis.call('LINDEX', x, 1 + drop)
    if not entry or event_position(entry) >= cutoff then
      break
    end
    drop = drop + 1
  end
  if drop > 0 then
    local dropped = redis.call('LPOP', x, drop + 1)
    redis.call('LPUSH', x, '!' .. string.match(dropped[#dropped], '^([^|]*)'))
  end
  redis.call('PEXPIREAT', x, digits(now + EVENT_RETENTION_MS))
  redis.call('SPUBLISH', x, id)
  return id
end
