#!lua flags=no-writes
-- One bounded step of a job listing (``hasten jobs list``, the dashboard): examine at most ARGV[6] rows of a queue
-- in due order from a cursor, and return those that pass the filters, at most ARGV[7]. Bounded whatever the queue
-- holds and however rare the matches: the caller gets the last row examined as its cursor and calls again.
-- KEYS[1] queue zset
-- ARGV[1] now (ms), ARGV[2] lowest due time (ms or '-inf'), ARGV[3] highest due time (ms or '+inf'),
-- ARGV[4] cursor: due time of the last row examined ('' to start at ARGV[2]), ARGV[5] its job id,
-- ARGV[6] rows examined at most, ARGV[7] matches returned at most,
-- ARGV[8] state ('' any; queued, running, deferred, retrying, held), ARGV[9] function token: the bytes `"f":"<name>"` a
--   JSON payload of that function contains ('' any; a payload that is not JSON passes, for the caller to decode),
-- ARGV[10] job id prefix ('' any)
-- A job is running when its in-progress key exists, queued when due and not running, retrying when due later with
-- a try counter (a failed try waiting out its backoff), deferred when due later without one, held when its
-- function's limit holds it aside (limits.py: at HELD_SCORE_MS, shown with the due time it waits in order by).
-- The token is a coarse filter (an argument can contain it too): the caller decodes the payloads and checks.
-- Returns {rows examined, cursor due time or false, cursor id or false, 1 when the range is exhausted else 0,
--   then per match: id, due time, state, tries, payload or false}
local queue = KEYS[1]
local now = tonumber(ARGV[1])
local high = ARGV[3]
local after_score, after_id = ARGV[4], ARGV[5]
local cap, want = tonumber(ARGV[6]), tonumber(ARGV[7])
local state_wanted, token, prefix = ARGV[8], ARGV[9], ARGV[10]

local rows
if after_id ~= '' then
  local start
  local rank = redis.call('ZRANK', queue, after_id)
  if rank and redis.call('ZSCORE', queue, after_id) == after_score then
    start = rank + 1  -- the cursor's row is still there: right after it, O(log N) whatever the depth
  else
    -- it left (finished, or moved by a retry): past the rows due earlier and past those due at the same time whose
    -- id sorts before it (ties in due time sort by id bytes; Lua compares by the server's collation, the same for
    -- the ASCII of job ids), found by bisection over ranks
    local lo = redis.call('ZCOUNT', queue, '-inf', '(' .. after_score)
    local hi = lo + redis.call('ZCOUNT', queue, after_score, after_score)
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if redis.call('ZRANGE', queue, mid, mid)[1] <= after_id then
        lo = mid + 1
      else
        hi = mid
      end
    end
    start = lo
  end
  rows = redis.call('ZRANGE', queue, start, start + cap - 1, 'WITHSCORES')
else
  rows = redis.call('ZRANGEBYSCORE', queue, ARGV[2], high, 'WITHSCORES', 'LIMIT', 0, cap)
end

local high_n = tonumber(high) or math.huge
local examined, last_id, last_score = 0, false, false
local out = {}
local matched = 0
local exhausted = #rows < 2 * cap and 1 or 0  -- (two entries per row: id, due time)
for i = 1, #rows, 2 do
  local id, score = rows[i], rows[i + 1]
  local due = tonumber(score)
  if due > high_n then
    exhausted = 1
    break
  end
  do
    examined = examined + 1
    last_id, last_score = id, score
    local ok = prefix == '' or string.sub(id, 1, #prefix) == prefix
    local state
    if ok then
      if redis.call('EXISTS', IN_PROGRESS_KEY_PREFIX .. id) == 1 then
        state = 'running'
      elseif due <= now then
        state = 'queued'
      elseif due >= HELD_SCORE_MS then
        state = 'held'
      elseif redis.call('EXISTS', RETRY_KEY_PREFIX .. id) == 1 then
        state = 'retrying'
      else
        state = 'deferred'
      end
      ok = state_wanted == '' or state == state_wanted
    end
    local payload = false
    if ok then
      payload = redis.call('GET', JOB_KEY_PREFIX .. id)
      if token ~= '' and payload and string.sub(payload, 1, 1) == '{' then
        ok = string.find(payload, token, 1, true) ~= nil
      end
    end
    if ok then
      out[#out + 1] = id
      if state == 'held' then
        -- shown with the due time it keeps its place by (limits_lib.lua), not the score that keeps it out of reach
        local entry = redis.call('HMGET', LIMIT_OF_KEY_PREFIX .. id, 'f', 'k')
        local bucket = entry[2] and (entry[1] .. '\n' .. entry[2]) or entry[1]
        out[#out + 1] = bucket and redis.call('ZSCORE', LIMIT_HELD_KEY_PREFIX .. KEYS[1] .. '\n' .. bucket, id) or now
      else
        out[#out + 1] = score
      end
      out[#out + 1] = state
      out[#out + 1] = tonumber(redis.call('GET', RETRY_KEY_PREFIX .. id) or '0')
      out[#out + 1] = payload
      matched = matched + 1
      if matched >= want then
        exhausted = (i + 1 >= #rows and exhausted == 1) and 1 or 0
        break
      end
    end
  end
end
local result = {examined, last_score, last_id, exhausted}
for _, v in ipairs(out) do
  result[#result + 1] = v
end
return result
