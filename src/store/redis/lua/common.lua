-- Shared by every script (prepended to each when it is registered).
--
-- A session record is "1|<version>|<storage expiry ms>|<expires_at ms or 0>|<data>";
-- a user's index is a sorted set of session ids scored by storage expiry.
-- A session is live while now <= its storage expiry, which is how Redis
-- expires keys set with PXAT.

-- Redis 6.2 replicates scripts verbatim unless told otherwise, and a script
-- that writes after reading TIME must be replicated by its effects; Redis 7
-- always does that and keeps this call as a no-op.
if redis.replicate_commands then
  redis.replicate_commands()
end

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

-- Parses a record: version (string), expires_at (number, 0 for none), and the
-- position where its data starts.
local function parse(record)
  local version, _, expires_at, data_start = string.match(record, '^1|(%d+)|(%d+)|(%d+)|()')
  return version, tonumber(expires_at), data_start
end

local function record(version, storage_expiry, expires_at, data)
  return '1|' .. version .. '|' .. digits(storage_expiry) .. '|' .. digits(expires_at) .. '|' .. data
end

-- min(now + ttl, expires_at), where expires_at 0 means no absolute end.
local function storage_expiry(now, ttl, expires_at)
  local expiry = now + ttl
  if expires_at > 0 and expires_at < expiry then
    return expires_at
  end
  return expiry
end

-- Drops the index entries of expired sessions.
local function prune_index(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. digits(now))
end

-- Makes the index expire with its longest-lived entry (or deletes it when
-- empty), so an idle user's keys all disappear on their own.
local function expire_index(index)
  local last = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIREAT', index, last[2])
  else
    redis.call('DEL', index)
  end
end

local function settle_index(index, now)
  prune_index(index, now)
  expire_index(index)
end

-- Byte-wise string order. Lua's own < compares with strcoll, which follows
-- the server's locale.
local function bytes_less(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end
