#!lua
-- Record the outcome of a batch of jobs in one call, each as arq's finish_job would.
-- KEYS[1] queue zset, KEYS[2] wake-up list (a job put back wakes an idle worker with a token that is the earliest
--   due time put back, so that the worker looks there even if its claim cursor is past it),
-- KEYS[3] dead-letter zset, KEYS[4] this minute's outcome counts (a hash by kind), KEYS[5] this minute's try
--   durations (a hash of counts by '<function>|<log-scale bucket>', see durations.py), KEYS[6] abort set,
-- KEYS[7] the queue's channel for ended jobs (not a key: named here, with the queue's hash tag, for its slot; as
--   a key that never exists it also makes a Redis Cluster refuse this script while the queue's slot moves),
-- KEYS[8] the queue's limits (limits.py): while it exists, a job of a limited function gives its slot back and the
--   next held jobs of its bucket are promoted (back in the queue, due now, with a wake-up token)
-- ARGV[1] max wake-up tokens kept, ARGV[2] now (ms), ARGV[3] dead-letter retention (ms), ARGV[4] owner (the
--   worker's id, the value of the in-progress keys it holds), ARGV[5] outcome counts' retention (ms), ARGV[6]
--   durations' retention (ms), ARGV[7] n: how many duration fields follow, ARGV[8] how long a promoted job keeps
--   the slot it is promoted to before a worker claims it (ms), ARGV[9 .. 8+2n]: field, count (the
--   batch's tries counted up by the caller), then groups of nine: job id, action, result bytes ('' for none), number, dead-letter record ('' for none), run status
--   ('' unless a cron job: its entry's state records the status and duration), duration (ms), kind (how the try
--   ended, counted per minute: complete, failed, retried, aborted, dead), workflow note ('' unless the final
--   outcome of a workflow step: its result's value as JSON when it completed, else how it ended; see below)
--   action 'done':  store the result for `number` ms (-1: forever, 0: not kept), then delete the job,
--                   its try counter and in-progress key, and remove it from the queue and the abort set
--   action 'again': release the in-progress key and put the job back in the queue due at `number` (ms);
--                   a result ('' for none) is the failed try's error, appended to jobs:errors:<id> for a day
--   action 'back':  as 'again', and give back the try it spent (a job interrupted by a shutdown)
-- A dead-letter record (a job that failed for good) is stored with the outcome, in the same call.
-- Leases are owned: an outcome is written only while the job's in-progress key is the owner's, or gone with the
-- job still there. A worker that lost its lease (another worker took the job over, or finished it) changes
-- nothing of the job: the new owner's state is never clobbered and a result is recorded once.
-- The ids of the jobs that ended (action 'done': a result, a dead letter, an abort) are published on KEYS[7] in
-- one message, NUL-separated, for the clients waiting on them.
-- Returns the ids whose outcome was not written for that reason.
--#include limits_lib
local queue = KEYS[1]

-- Workflows (workflow.py) ------------------------------------------------------------------------------------------
-- A step's final outcome ('done' with a workflow note) advances its workflow in this same call (workflow_step, in
-- workflow_step.lua, shared with abort.lua), so a crash never leaves a step done and its successor unqueued, and a
-- step that is retried ('again') or whose lease was lost advances nothing. A job outside any workflow has no note
-- and costs nothing here.
local abort_set = KEYS[6]
--#include workflow_step
local workflow_queued = 0
-- ------------------------------------------------------------------------------------------------------------------

local again = false
local limited = redis.call('EXISTS', KEYS[8]) == 1
local grace = tonumber(ARGV[8])
local now = tonumber(ARGV[2])
local retention = tonumber(ARGV[3])
local dead = false
local owner = ARGV[4]
local skipped = {}
local ended = {}
local counts = {}
local timed = tonumber(ARGV[7])
for i = 9 + 2 * timed, #ARGV, 9 do
  local id = ARGV[i]
  local action = ARGV[i + 1]
  local holder = redis.call('GET', IN_PROGRESS_KEY_PREFIX .. id)
  local ours = holder == owner or (not holder and redis.call('EXISTS', JOB_KEY_PREFIX .. id) == 1)
  if not ours then
    skipped[#skipped + 1] = id
  elseif action == 'done' then
    local ttl = tonumber(ARGV[i + 3])
    if ARGV[i + 2] ~= '' and ttl ~= 0 then
      if ttl < 0 then
        redis.call('SET', RESULT_KEY_PREFIX .. id, ARGV[i + 2])
      else
        redis.call('SET', RESULT_KEY_PREFIX .. id, ARGV[i + 2], 'PX', ttl)
      end
    end
    redis.call('DEL', RETRY_KEY_PREFIX .. id, IN_PROGRESS_KEY_PREFIX .. id, JOB_KEY_PREFIX .. id)
    redis.call('ZREM', queue, id)
    redis.call('ZREM', KEYS[6], id)
    ended[#ended + 1] = id
    if ARGV[i + 8] ~= '' then  -- a workflow step's final outcome (see 'Workflows' above)
      local queued, wf = workflow_step(id, ARGV[i + 7], ARGV[i + 8], now)
      workflow_queued = workflow_queued + queued
      if wf then
        ended[#ended + 1] = wf
      end
    end
    if ARGV[i + 4] ~= '' then
      redis.call('SET', DLQ_ENTRY_KEY_PREFIX .. id, ARGV[i + 4], 'PX', retention)
      redis.call('ZADD', KEYS[3], now, id)
      dead = true
    end
  else
    redis.call('DEL', IN_PROGRESS_KEY_PREFIX .. id)
    redis.call('ZADD', queue, 'XX', ARGV[i + 3], id)
    if not again or tonumber(ARGV[i + 3]) < again then
      again = tonumber(ARGV[i + 3])
    end
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', TRY_ERRORS_KEY_PREFIX .. id, ARGV[i + 2])
      redis.call('PEXPIRE', TRY_ERRORS_KEY_PREFIX .. id, 86400000)
    end
    if action == 'back' and tonumber(redis.call('GET', RETRY_KEY_PREFIX .. id) or '0') > 0 then
      redis.call('DECR', RETRY_KEY_PREFIX .. id)
    end
  end
  local keep = ARGV[i + 4] ~= '' and retention or nil  -- a dead letter keeps its side entry (requeue)
  if ours and limited and release(queue, id, action == 'done', now, grace, keep) > 0 and (not again or now < again) then
    again = now  -- promoted jobs are due now: wake a worker for them
  end
  local kind = ARGV[i + 7]
  if ours and kind ~= '' then
    counts[kind] = (counts[kind] or 0) + 1
  end
  if ours and ARGV[i + 5] ~= '' then
    -- a cron job's id is [queue's hash tag]cron:<entry name>:<tick or startup-time>, its entry's state
    -- CRON_STATE_KEY_PREFIX [tag] <entry name>; only an entry a worker registered is noted (a job enqueued by hand
    -- with an id like 'cron:x' has no entry name: nothing to note)
    local tag = string.match(id, '^{[^}]+}') or ''
    local name = string.match(string.sub(id, #tag + 1), '^cron:(.*):[^:]*$')
    local state = name and (CRON_STATE_KEY_PREFIX .. tag .. name)
    if state and redis.call('EXISTS', state) == 1 then
      redis.call('HSET', state, 'last_status', ARGV[i + 5], 'last_duration_ms', ARGV[i + 6],
        'last_finished_ms', now, 'last_run_job_id', id)
      if ARGV[i + 5] == 'complete' then  -- read by the metrics (hasten_cron_last_success_timestamp_seconds)
        redis.call('HSET', state, 'last_success_ms', now)
      end
    end
  end
end
if again then
  redis.call('LPUSH', KEYS[2], string.format('%d', again))
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
if workflow_queued > 0 then  -- steps a workflow queued: a token (due now) for each, as many as are kept
  for _ = 1, math.min(workflow_queued, tonumber(ARGV[1])) do
    redis.call('LPUSH', KEYS[2], string.format('%d', now))
  end
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
if next(counts) then
  for kind, n in pairs(counts) do
    redis.call('HINCRBY', KEYS[4], kind, n)
  end
  redis.call('PEXPIRE', KEYS[4], ARGV[5])
end
if timed > 0 then
  for i = 9, 8 + 2 * timed, 2 do
    redis.call('HINCRBY', KEYS[5], ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIRE', KEYS[5], ARGV[6])
end
if dead then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - retention)
end
if #ended > 0 then
  redis.call('PUBLISH', KEYS[7], table.concat(ended, '\0'))
end
return skipped
