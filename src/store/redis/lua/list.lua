-- Reads one page of a user's live sessions in byte-wise id order.
-- KEYS: the user's hash, by-expiry set, by-id set.
-- ARGV: the id to start after ('' for the first page), how many sessions to
--       return (0 asks only whether any live one follows).
-- Returns {status, cursor, id1, record1, id2, record2, ...}: status 0 when no
-- live session follows the last one returned, 1 when one does, 2 when the
-- scan stopped at its budget first; the caller then asks again after
-- `cursor` (the last id scanned) for the rest of its page.
--
-- ZRANGE BYLEX compares bytes (memcmp), the order the port promises, and
-- starts at the cursor in O(log n). Expired sessions met on the way are
-- skipped and removed; at most SCAN_BUDGET entries are read per call, so a
-- run of expired ones costs several short calls, never one long one.
local SCAN_BUDGET = 1024

local h, e, l = KEYS[1], KEYS[2], KEYS[3]
local after, want = ARGV[1], tonumber(ARGV[2])

local now = now_ms()
local start = after == '' and '-' or '(' .. after
local reply = {0, ''}
local found, scanned = 0, 0
local dead = {}
while true do
  if found > want then
    reply[1] = 1
    break
  end
  local room = SCAN_BUDGET - scanned
  if room <= 0 then
    reply[1] = 2
    break
  end
  local batch = math.min(want + 1 - found, room)
  local ids = redis.call('ZRANGE', l, start, '+', 'BYLEX', 'LIMIT', 0, batch)
  if #ids > 0 then
    local records = redis.call('HMGET', h, unpack(ids))
    for i, id in ipairs(ids) do
      local current = records[i]
      if live(current, now) then
        found = found + 1
        if found <= want then
          reply[#reply + 1] = id
          reply[#reply + 1] = current
        end
      else
        dead[#dead + 1] = id
      end
    end
    scanned = scanned + #ids
    reply[2] = ids[#ids]
    start = '(' .. ids[#ids]
  end
  if #ids < batch then
    reply[1] = found > want and 1 or 0
    break
  end
end
if #dead > 0 then
  forget(h, e, l, dead)
end
return reply
