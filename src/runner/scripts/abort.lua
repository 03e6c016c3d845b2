#!lua
-- Abort one job: a queued job is finished here as aborted; a running one is flagged for its worker to cancel.
-- KEYS[1] queue zset, KEYS[2] abort set (arq's, or the queue's own on a cluster: keyspace.py), then the job's keys:
--   KEYS[3] in-progress, KEYS[4] result, KEYS[5] job, KEYS[6] try counter, KEYS[7] the queue's channel for ended
--   jobs (not a key: named for its slot), where a job aborted here is announced to the clients waiting on it
-- ARGV[1] job id, ARGV[2] now (ms), ARGV[3] result record of the abort, ARGV[4] result ttl (ms, 0: not kept)
-- A workflow step held for its inputs (not in the queue) is aborted as a queued job is; a workflow step aborted here
-- fails its workflow once, as a step that fails for good does (workflow_step.lua), announced with the job.
-- Returns 1: aborted before it started, 2: running (its worker cancels it), 0: no such job in the queue.
local queue, abort_set = KEYS[1], KEYS[2]
--#include limits_lib
--#include workflow_step
local id = ARGV[1]
local in_progress = KEYS[3]
if redis.call('SET', in_progress, '1', 'PX', 5000, 'NX') then
  -- nobody runs it, and nobody will now: the in-progress key is ours
  if not redis.call('ZSCORE', queue, id) and not held_step(id) then
    redis.call('DEL', in_progress)
    return 0
  end
  if tonumber(ARGV[4]) ~= 0 then
    redis.call('SET', KEYS[4], ARGV[3], 'PX', ARGV[4])
  end
  redis.call('DEL', KEYS[5], KEYS[6], in_progress)
  redis.call('ZREM', queue, id)
  forget(queue, id)  -- a job of a limited function (held, or waiting in the queue) leaves its bucket
  local _, wf = workflow_step(id, 'aborted', 'was aborted', tonumber(ARGV[2]))
  redis.call('PUBLISH', KEYS[7], wf and (id .. '\0' .. wf) or id)
  return 1
end
-- arq's own signal: the worker running it cancels it (stock arq workers too, with allow_abort_jobs)
redis.call('ZADD', abort_set, ARGV[2], id)
return 2
