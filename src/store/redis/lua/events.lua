-- Reads a user's session events (see emit in common.lua).
-- KEYS: the user's event log.
-- ARGV: the cursor ('' for none), '1' when it is a client's cursor (checked
--       against retention) or '0' when the server reached it itself, how
--       many events to return.
-- Returns {1} when events after the cursor may have been dropped, else
-- {0, last id, entries}: the log's last id ('0-0' for none) and up to that
-- many entries after the cursor, oldest first (none without a cursor).
--
-- Events after a cursor may have been dropped when
--   * the cursor is after the log's last id: this is not the log the
--     cursor came from (one that expired and was written again, or a
--     primary that lost writes in a failover);
--   * the cursor is before the last id retention dropped (the header);
--   * for a client's cursor: there is no log (it expired: no event for a
--     whole EVENT_RETENTION), or the cursor is older than EVENT_RETENTION
--     (the log may have expired and been written again since, with a new
--     header).
--
-- The work is bounded by what it returns: the entries after a cursor are
-- found from the end of the log, where a watcher's cursor usually is.
local x = KEYS[1]
local after, checked, count = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])

-- Compares two positions: -1, 0 or 1.
local function compare(a_ms, a_seq, b_ms, b_seq)
  if a_ms ~= b_ms then
    return a_ms < b_ms and -1 or 1
  end
  if a_seq ~= b_seq then
    return a_seq < b_seq and -1 or 1
  end
  return 0
end

local header = redis.call('LINDEX', x, 0)
if not header then
  if after ~= '' and checked then
    return {1}
  end
  return {0, '0-0', {}}
end
local last_entry = redis.call('LINDEX', x, -1)
local last = string.match(last_entry, '^!?([^|]*)')
if after == '' then
  return {0, last, {}}
end
local a_ms, a_seq = event_position(after)
if checked and a_ms < now_ms() - EVENT_RETENTION_MS then
  return {1}
end
local l_ms, l_seq = event_position(last)
local d_ms, d_seq = event_position(string.sub(header, 2))
if compare(a_ms, a_seq, l_ms, l_seq) > 0 or compare(a_ms, a_seq, d_ms, d_seq) < 0 then
  return {1}
end
if count == 0 then
  return {0, last, {}}
end

-- Entries after the cursor: chunks from the end, each twice as long as the
-- one before, until one starts at or before the cursor (or the header).
local entries = {}
local length = redis.call('LLEN', x) - 1
local found = 0
local chunk = 16
while found < length do
  local take = math.min(chunk, length - found)
  local part = redis.call('LRANGE', x, -(found + take), -(found + 1))
  local stop = false
  local newer = {}
  for i = #part, 1, -1 do
    local e_ms, e_seq = event_position(part[i])
    if compare(e_ms, e_seq, a_ms, a_seq) <= 0 then
      stop = true
      break
    end
    newer[#newer + 1] = part[i]
  end
  for i = 1, #newer do
    entries[#entries + 1] = newer[i]
  end
  found = found + take
  if stop then
    break
  end
  chunk = chunk * 2
end
-- entries runs newest first: the oldest `count` of them, oldest first.
local result = {}
for i = #entries, math.max(1, #entries - count + 1), -1 do
  result[#result + 1] = entries[i]
end
return {0, last, result}
