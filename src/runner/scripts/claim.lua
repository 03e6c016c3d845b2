#!lua
-- Claim up to ARGV[2] due jobs in one call (arq's 4 + 1 round trips per job become one call per batch).
-- KEYS[1] queue zset, KEYS[2] idle-worker zset, KEYS[3] this worker's own list (jobs handed to it), KEYS[4] abort set,
-- KEYS[5] the queue's paused flag (pausing.py): while it is set, nothing is claimed and the worker does not
--   register as idle (so no enqueue hands it a job); jobs handed to it before the pause are still taken
-- KEYS[6] the queue's limits (limits.py): while it exists, each job found is admitted by its limits (a job of a
--   limited function over its limit is held or deferred, not claimed: no try spent, no slot used); KEYS[7] the
--   queue's wake-up list (held jobs promoted when a slot came back by a lease's end wake a worker)
-- KEYS[8] the queue's rewind marker: the lowest due time of a job enqueued behind the workers' cursors (a
--   priority's head start, see enqueue.lua); the claim that reads it scans from there and clears it
-- KEYS[9] the queue's slot guard, a key never written: declared so that a Redis Cluster refuses this script
--   (TRYAGAIN) while the queue's slot moves, as it reads keys it finds through the queue (in-progress keys, jobs)
-- ARGV[1] now (ms), ARGV[2] how many to claim, ARGV[3] in-progress ttl (ms),
-- ARGV[4] cursor member ('' for none), ARGV[5] cursor score ('-inf' for none), ARGV[6] rows to scan at most,
-- ARGV[7] this worker's idle member ('<id>|<hand-off lease ms>'), ARGV[8] idle registration ttl (ms),
-- ARGV[9] owner (this worker's id: the value of the in-progress keys it holds), ARGV[10] '1': also sweep the
--   limits (slots of killed workers' jobs come back), ARGV[11..] ids of jobs that run in this worker without a lease
--   (lost while they ran): never claimed again by it while they run
--
-- Jobs already handed to this worker (see enqueue.lua) are taken from its own list first, and their short
-- hand-off lease becomes a full one. A claim that finds
-- fewer due jobs than it asked for registers the worker as idle, so the next enqueue hands it the job.
--
-- Running jobs stay in the queue (arq's semantics), so scanning from the head each time would re-examine every
-- running job. The caller keeps a cursor, the last member examined: while it is still in the queue at the same
-- score the scan goes on right after it (by rank), otherwise from its score. The caller resets it now and then, which finds
-- jobs whose in-progress key expired behind the cursor.
-- A job is ours when SET in-progress NX succeeds: the key a stock arq worker WATCHes, so a mixed fleet never
-- runs a job twice.
--
-- Returns {claimed, last member, last score, more, next due, handed}
--   claimed: flat list of (id, score, payload or '', try, aborted) per job
--   more: 1 when the scan stopped early (batch full or scan limit) and further due jobs may follow
--   next due: score of the first job due after now, or false
--#include limits_lib
local queue = KEYS[1]
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local scan = tonumber(ARGV[6])
redis.call('ZREM', KEYS[2], ARGV[7])
local owner = ARGV[9]
local handed = redis.call('LPOP', KEYS[3], limit) or {}
for _, packed in ipairs(handed) do
  -- '<len(id)>:<id>...': the hand-off lease becomes a full lease where it is still ours
  local digits = string.match(packed, '^(%d+):')
  local ip_key = IN_PROGRESS_KEY_PREFIX .. string.sub(packed, #digits + 2, #digits + 1 + tonumber(digits))
  if redis.call('GET', ip_key) == owner then
    redis.call('PEXPIRE', ip_key, ARGV[3])
  end
end
limit = limit - #handed
if limit <= 0 then
  return {{}, ARGV[4], ARGV[5], 1, false, handed}
end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return {{}, ARGV[4], ARGV[5], 0, false, handed}
end
local rank = false
local from = ARGV[5]
local behind = redis.call('GET', KEYS[8])
if behind then
  redis.call('DEL', KEYS[8])
  if from ~= '-inf' and tonumber(behind) < tonumber(from) then
    from = tostring(tonumber(behind) - 1)
  end
end
if from ~= ARGV[5] then
  -- scan from the marker: the cursor is past a job enqueued there
elseif ARGV[4] ~= '' and redis.call('ZSCORE', queue, ARGV[4]) == ARGV[5] then
  -- the cursor's job is still where it was (not finished, nor put back at another time)
  rank = redis.call('ZRANK', queue, ARGV[4])
end
local rows
if rank then
  rows = redis.call('ZRANGE', queue, rank + 1, rank + scan, 'WITHSCORES')
else
  rows = redis.call('ZRANGEBYSCORE', queue, from, ARGV[1], 'WITHSCORES', 'LIMIT', 0, scan)
end
local more = 0
if #rows == 2 * scan then
  more = 1
end
local skip = {}
for i = 11, #ARGV do
  skip[ARGV[i]] = true
end
local limited = redis.call('EXISTS', KEYS[6]) == 1
local promoted = 0
if limited and ARGV[10] == '1' then
  promoted = sweep(queue, now, tonumber(ARGV[3]), LIMIT_SWEEP_BUCKETS)
end
local claimed = {}
local count = 0
local last_id = ARGV[4]
local last_score = ARGV[5]
for i = 1, #rows, 2 do
  local id = rows[i]
  local score = rows[i + 1]
  if tonumber(score) > now then
    more = 0
    break
  end
  last_id = id
  last_score = score
  local ours = not skip[id] and redis.call('SET', IN_PROGRESS_KEY_PREFIX .. id, owner, 'PX', ARGV[3], 'NX')
  if ours and limited then
    local moved
    ours, moved = admit(queue, id, score, now, tonumber(ARGV[3]))
    promoted = promoted + moved
    if not ours then
      redis.call('DEL', IN_PROGRESS_KEY_PREFIX .. id)
    end
  end
  if ours then
    local retry_key = RETRY_KEY_PREFIX .. id
    local try = redis.call('INCR', retry_key)
    redis.call('EXPIRE', retry_key, 88400)
    claimed[#claimed + 1] = id
    claimed[#claimed + 1] = score
    claimed[#claimed + 1] = redis.call('GET', JOB_KEY_PREFIX .. id) or ''
    claimed[#claimed + 1] = try
    claimed[#claimed + 1] = redis.call('ZREM', KEYS[4], id)
    count = count + 1
    if count >= limit then
      more = 1
      break
    end
  end
end
if promoted > 0 then
  redis.call('LPUSH', KEYS[7], string.format('%d', now))
  redis.call('LTRIM', KEYS[7], 0, MAX_WAKE_TOKENS - 1)
end
local next_due = redis.call('ZRANGEBYSCORE', queue, '(' .. ARGV[1], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if more == 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('ZADD', KEYS[2], now + tonumber(ARGV[8]), ARGV[7])
end
return {claimed, last_id, last_score, more, next_due[2] or false, handed}
