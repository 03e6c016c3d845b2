#!lua
-- Enqueue a workflow in one call (workflow.py): its state, and every step's job key; the steps that wait for none
-- go into the queue now, the others are held (a job key, not in the queue) until the finish script queues them.
-- KEYS[1] queue zset, KEYS[2] wake-up list, KEYS[3] the workflow's state hash
-- ARGV[1] max wake-up tokens kept, ARGV[2] now (ms), ARGV[3] the state's ttl (ms), ARGV[4] m: how many state
--   fields follow, ARGV[5 .. 4+2m] field, value; then per step: job id, payload, job key ttl (ms), '1' to queue
--   it now or '0' to hold it, limit entry ('' for a step of an unlimited function; else its side entry, as in
--   enqueue.lua: the claim admits the step by its function's limits, whenever it is queued)
-- Returns 1, or 0 when the workflow exists already (nothing written).
--#include limits_lib
local state = KEYS[3]
if redis.call('EXISTS', state) == 1 then
  return 0
end
local m = tonumber(ARGV[4])
-- in slices: unpack() gives a few thousand values at most (Lua's C stack), a workflow has four fields a step
for first = 5, 4 + 2 * m, 1000 do
  redis.call('HSET', state, unpack(ARGV, first, math.min(first + 999, 4 + 2 * m)))
end
redis.call('PEXPIRE', state, ARGV[3])
local queued = 0
for i = 5 + 2 * m, #ARGV, 5 do
  local id = ARGV[i]
  redis.call('SET', JOB_KEY_PREFIX .. id, ARGV[i + 1], 'PX', ARGV[i + 2])
  if ARGV[i + 4] ~= '' then
    note_limit(id, ARGV[i + 4], ARGV[i + 2])
  end
  if ARGV[i + 3] == '1' then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    queued = queued + 1
  end
end
local max_tokens = tonumber(ARGV[1])
if queued > 0 then
  -- a token wakes one blocked worker (a token is a due time: now); one per step queued, as many as are kept
  for _ = 1, math.min(queued, max_tokens) do
    redis.call('LPUSH', KEYS[2], ARGV[2])
  end
  redis.call('LTRIM', KEYS[2], 0, max_tokens - 1)
end
return 1
