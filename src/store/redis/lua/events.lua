-- Reads a user's session events (see emit in common.lua).
-- KEYS: the user's event stream.
-- ARGV: the cursor ('' for none), '1' when it is a client's cursor (checked
--       against retention) or '0' when the server reached it itself, how
--       many events to return.
-- Returns {1} when events after the cursor may have been dropped, else
-- {0, last id, entries}: the stream's last id ('0-0' for none) and up to
-- that many entries after the cursor, as XRANGE returns them (none without
-- a cursor).
--
-- Events after a cursor may have been dropped when
--   * the cursor is after the stream's last id: this is not the stream the
--     cursor came from (one that expired and was written again, or a
--     primary that lost writes in a failover);
--   * the cursor is before the greatest id retention deleted;
--   * for a client's cursor: there is no stream (it expired: no event for a
--     whole EVENT_RETENTION), or the cursor is older than EVENT_RETENTION
--     (the stream may have expired and been written again since; a stream
--     written again starts a new max-deleted-entry-id).
local x = KEYS[1]
local after, checked, count = ARGV[1], ARGV[2] == '1', tonumber(ARGV[3])

-- Compares two ids written without leading zeros: -1, 0 or 1.
local function compare_ids(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  local function compare(p, q)
    if #p ~= #q then
      return #p < #q and -1 or 1
    end
    if p == q then
      return 0
    end
    return p < q and -1 or 1
  end
  local by_ms = compare(a_ms, b_ms)
  if by_ms ~= 0 then
    return by_ms
  end
  return compare(a_seq, b_seq)
end

if redis.call('EXISTS', x) == 0 then
  if after ~= '' and checked then
    return {1}
  end
  return {0, '0-0', {}}
end
local info = redis.call('XINFO', 'STREAM', x)
local last, max_deleted = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then
    last = info[i + 1]
  elseif info[i] == 'max-deleted-entry-id' then
    max_deleted = info[i + 1]
  end
end
if after == '' then
  return {0, last, {}}
end
if checked then
  local cutoff = digits(now_ms() - EVENT_RETENTION_MS) .. '-0'
  if compare_ids(after, cutoff) < 0 then
    return {1}
  end
end
if compare_ids(after, last) > 0 or compare_ids(after, max_deleted) < 0 then
  return {1}
end
if count == 0 then
  return {0, last, {}}
end
return {0, last, redis.call('XRANGE', x, '(' .. after, '+', 'COUNT', count)}
