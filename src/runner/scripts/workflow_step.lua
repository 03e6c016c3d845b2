-- Included (scripts.py: a '--#include workflow_step' line) by finish.lua and abort.lua, where the locals `queue`
-- (the queue zset) and `abort_set` (the abort set a running step is flagged in) are in scope, after limits_lib.lua
-- (a cancelled step of a limited function leaves its bucket: `forget`).
--
-- A workflow step's job id is '<workflow id>:<step>'; the state hash WORKFLOW_KEY_PREFIX .. <workflow id> holds
-- 'status' (running, complete, failed), 'on_failure' (cancel, continue), 'steps' (how many), 'left' (final steps not
-- yet done) and per step i: 'f:i' (its function), 'st:i' (held, queued, done, failed, aborted, cancelled), 'n:i' (its
-- successors, comma-separated), 'p:i' (inputs not yet done), 'r:i' (its result: the codec's envelope of {"r": value},
-- signed for the step when a signing secret is set, see workflow_steps.py).

-- (workflow id, step) of a workflow step's job id, else nothing
local function step_of(id)
  return string.match(id, '^(.*wf:%x+):(%d+)$')
end

-- The final outcome of step `id`: 'kind' is complete, or how it ended otherwise (dead, aborted); 'note' its result
-- when complete, else how it ended (the workflow's error names the step, its function and job id before it).
-- A step's final outcome is recorded once: only a step still queued (or running) or held ends here.
-- A completed step records its result; each successor whose last input it was goes into the queue (its job key was
-- written when the workflow was enqueued), due now. A step that failed for good (or was aborted) fails the workflow
-- once, with its error: held steps never run; with on_failure 'cancel', steps in the queue leave it and running
-- ones are asked to abort (the abort set). Outcomes after the end are recorded, and advance nothing.
-- Returns how many steps it queued, and the workflow id when the workflow ended (to announce with the jobs).
local function workflow_step(id, kind, note, now)
  local wf, step = step_of(id)
  if not wf then
    return 0, false
  end
  local state = WORKFLOW_KEY_PREFIX .. wf
  local status, successors, on_failure, steps, fn, current = unpack(redis.call('HMGET', state, 'status',
    'n:' .. step, 'on_failure', 'steps', 'f:' .. step, 'st:' .. step))
  if not status then
    return 0, false  -- expired, or never enqueued as a workflow
  end
  if current ~= 'queued' and current ~= 'held' then
    -- it ended already (or was cancelled): what runs under its id now (a job enqueued with that id once the
    -- step's own keys were gone) is not the step, and advances nothing a second time
    return 0, false
  end
  local complete = kind == 'complete'
  local st = complete and 'done' or (kind == 'aborted' and 'aborted' or 'failed')
  redis.call('HSET', state, 'st:' .. step, st)
  if complete then
    redis.call('HSET', state, 'r:' .. step, note)
  end
  if status ~= 'running' then
    return 0, false
  end
  local queued = 0
  if complete then
    for next_step in string.gmatch(successors or '', '%d+') do
      if redis.call('HINCRBY', state, 'p:' .. next_step, -1) == 0 then
        redis.call('ZADD', queue, now, wf .. ':' .. next_step)
        redis.call('HSET', state, 'st:' .. next_step, 'queued')
        queued = queued + 1
      end
    end
    if (successors or '') ~= '' or redis.call('HINCRBY', state, 'left', -1) > 0 then
      return queued, false
    end
    redis.call('HSET', state, 'status', 'complete', 'ended_ms', now)
  else
    local error = 'step ' .. step .. ' ' .. (fn or '?') .. '() (job ' .. id .. ') ' .. note
    redis.call('HSET', state, 'status', 'failed', 'error', error, 'failed_step', step, 'ended_ms', now)
    for i = 0, tonumber(steps) - 1 do
      local other = wf .. ':' .. i
      local other_st = redis.call('HGET', state, 'st:' .. i)
      if other_st == 'held' then
        redis.call('DEL', JOB_KEY_PREFIX .. other)
        forget(queue, other)
        redis.call('HSET', state, 'st:' .. i, 'cancelled')
      elseif other_st == 'queued' and on_failure == 'cancel' then
        if redis.call('EXISTS', IN_PROGRESS_KEY_PREFIX .. other) == 1 then
          redis.call('ZADD', abort_set, now, other)  -- running: its worker cancels it; its outcome is recorded
        else
          redis.call('ZREM', queue, other)
          redis.call('DEL', JOB_KEY_PREFIX .. other, RETRY_KEY_PREFIX .. other)
          forget(queue, other)  -- held by its limits, or waiting in the queue
          redis.call('HSET', state, 'st:' .. i, 'cancelled')
        end
      end
    end
  end
  redis.call('PEXPIRE', state, redis.call('HGET', state, 'keep_ms'))
  return queued, wf
end

-- Whether `id` is a workflow step held for its inputs (its job key written, not in the queue).
local function held_step(id)
  local wf, step = step_of(id)
  return wf ~= nil and redis.call('HGET', WORKFLOW_KEY_PREFIX .. wf, 'st:' .. step) == 'held'
    and redis.call('EXISTS', JOB_KEY_PREFIX .. id) == 1
end
