#!lua flags=no-writes
-- A queue's counts for ``hasten status`` and the dashboard, read in one call and bounded at any queue size.
-- KEYS[1] queue zset
-- ARGV[1] now (ms), ARGV[2] rows examined at most per scan
--
-- Running jobs stay in the queue (arq's semantics) with their in-progress key, so the oldest due job that waits
-- is the first due row without one: found by scanning at most ARGV[2] due rows. Jobs due later are deferred
-- (enqueued for later) or retrying (a failed try, run again after its backoff: its try counter exists); the first
-- ARGV[2] of them are told apart, and when there are more the caller scales the sample. Jobs held by their limits
-- (limits.py: scored HELD_SCORE_MS) are counted apart, not as later.
-- Returns {total, due (running ones included), later, retrying among the sample, sample size,
--          score of the oldest due job not running or false, held}
local queue = KEYS[1]
local now = ARGV[1]
local cap = tonumber(ARGV[2])
local total = redis.call('ZCARD', queue)
local due = redis.call('ZCOUNT', queue, '-inf', now)
local held = redis.call('ZCOUNT', queue, HELD_SCORE_MS, '+inf')
local later = total - due - held
local oldest = false
local rows = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', 0, cap)
for i = 1, #rows, 2 do
  if redis.call('EXISTS', IN_PROGRESS_KEY_PREFIX .. rows[i]) == 0 then
    oldest = rows[i + 1]
    break
  end
end
local retrying = 0
local sample = redis.call('ZRANGEBYSCORE', queue, '(' .. now, '(' .. HELD_SCORE_MS, 'LIMIT', 0, cap)
for _, id in ipairs(sample) do
  retrying = retrying + redis.call('EXISTS', RETRY_KEY_PREFIX .. id)
end
return {total, due, later, retrying, #sample, oldest, held}
