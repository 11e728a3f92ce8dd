-- Reads one page of a user's live sessions in byte-wise id order.
-- KEYS: user index.
-- ARGV: session key prefix, the id to start after ('' for the first page),
--       page size.
-- Returns {has_more (0 or 1), id1, record1, id2, record2, ...}.
local index = KEYS[1]
local session_prefix, after, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])

local ids = redis.call('ZRANGEBYSCORE', index, digits(now_ms()), '+inf')
local candidates = {}
for _, id in ipairs(ids) do
  if after == '' or bytes_less(after, id) then
    candidates[#candidates + 1] = id
  end
end
table.sort(candidates, bytes_less)

local reply = {#candidates > limit and 1 or 0}
for i = 1, math.min(limit, #candidates) do
  local id = candidates[i]
  local current = redis.call('GET', session_prefix .. id)
  if current then
    reply[#reply + 1] = id
    reply[#reply + 1] = current
  end
end
return reply
