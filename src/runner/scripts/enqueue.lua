#!lua
-- Enqueue jobs in one call, with arq's keys and semantics, and wake or feed idle workers.
-- One job (JobClient.enqueue) is a batch of one; enqueue_many sends up to a thousand at once; a cron tick is a
-- batch of one with a tick marker, so that only one worker enqueues it.
-- KEYS[1] queue zset, KEYS[2] wake-up list, KEYS[3] idle-worker zset, KEYS[4] the queue's rewind marker (below),
--   then per job: job key, result key; then, for a cron tick: the tick marker and the entry's state hash
-- ARGV[1] max wake-up tokens kept, ARGV[2] now (ms), ARGV[3] tick marker ttl (ms, '0': not a cron tick),
--   ARGV[4] '1': skip the tick while the entry's previous run is unfinished, ARGV[5] tick (ms, '0' for a
--   startup run), ARGV[6] the entry's next tick (ms), then per job: id, payload, score (due time, ms), job key
--   ttl (ms), limit entry ('' for a job of an unlimited function; else its function, and for a limit per key a
--   newline and the key: written as the job's side entry, read by the claim, limits.py)
-- Returns one 1 (written) or 0 (a job or result with that id exists, or the tick was taken) per job; 2 for a
-- tick skipped because the previous run is unfinished.
--#include limits_lib
local queue, wake, idle, rewind = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local now = tonumber(ARGV[2])
local n = (#ARGV - 6) / 5
if ARGV[3] ~= '0' then
  local state, id, tick = KEYS[6 + 2 * n], ARGV[7], ARGV[5]
  if not redis.call('SET', KEYS[5 + 2 * n], id, 'NX', 'PX', ARGV[3]) then
    return {0}
  end
  if tick ~= '0' then
    if tonumber(tick) > tonumber(redis.call('HGET', state, 'last_tick') or '0') then
      redis.call('HSET', state, 'last_tick', tick, 'next_tick', ARGV[6])
    end
  end
  local previous = redis.call('HGET', state, 'last_job_id')
  if ARGV[4] == '1' and previous and redis.call('EXISTS', JOB_KEY_PREFIX .. previous) == 1 then
    redis.call('HSET', state, 'last_skipped_tick', tick, 'last_skipped_because', previous)
    redis.call('HINCRBY', state, 'skipped_overlap', 1)
    return {2}
  end
  redis.call('HSET', state, 'last_job_id', id, 'last_enqueued_ms', now)
  redis.call('HINCRBY', state, 'enqueued', 1)
end
local written = {}
local tokens = {}
-- the lowest score written well before now (a priority's head start, or a late due time) that no idle worker
-- took: every worker's claim cursor may be past it, so the next claim scans from there (claim.lua)
local behind = false
local function mark_behind(score)
  if score < now - 1000 and (not behind or score < behind) then
    behind = score
  end
end
for j = 0, n - 1 do
  local a = 7 + 5 * j
  local id, payload, score, ttl, limit = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local job_key, result_key = KEYS[5 + 2 * j], KEYS[6 + 2 * j]
  if redis.call('EXISTS', job_key, result_key) > 0 then
    written[#written + 1] = 0
  else
    redis.call('SET', job_key, payload, 'PX', ttl)
    redis.call('ZADD', queue, score, id)
    written[#written + 1] = 1
    if limit ~= '' then
      note_limit(id, limit, ttl)
    end
    if limit ~= '' and tonumber(score) <= now then
      -- a job of a limited function is not handed over: the claim decides by its limits. A token wakes an idle
      -- worker to claim it; with no live registration every worker is busy and claims again when a slot frees
      if redis.call('ZCOUNT', idle, now, '+inf') > 0 then
        tokens[#tokens + 1] = score
      end
      mark_behind(tonumber(score))
    elseif tonumber(score) <= now then
      -- idle hand-off: a worker that registered as idle (member "<worker id>|<hand-off lease ms>", scored by
      -- expiry) gets the job already claimed, on its own list, so its blocking pop returns a job. A worker
      -- registers in the same call that finds nothing due and blocks right after, so with no live
      -- registration every worker is busy and claims again when a slot frees: no token is needed.
      -- The lease is short and the list expires with it: a job handed to a worker that died in the meantime
      -- is claimed by another within seconds; the worker makes it a full lease when it takes the job.
      local member = redis.call('ZRANGEBYSCORE', idle, now, '+inf', 'LIMIT', 0, 1)[1]
      if member then
        -- (a worker id carries its queue's hash tag, which may hold a '|': the lease follows the last one)
        local worker, lease = string.match(member, '^(.*)|(%d+)$')
        local list = WORKER_LIST_PREFIX .. worker
        redis.call('ZREM', idle, member)
        redis.call('SET', IN_PROGRESS_KEY_PREFIX .. id, worker, 'PX', lease)
        local try = redis.call('INCR', RETRY_KEY_PREFIX .. id)
        redis.call('EXPIRE', RETRY_KEY_PREFIX .. id, 88400)
        redis.call('LPUSH', list, #id .. ':' .. id .. score .. ':' .. try .. ':' .. payload)
        redis.call('PEXPIRE', list, lease)
      else
        mark_behind(tonumber(score))
      end
    else
      -- a deferred job: wake a blocked worker so it plans its wait for this due time (a token is a due time)
      tokens[#tokens + 1] = score
    end
  end
end
if behind then
  local marked = redis.call('GET', rewind)
  if not marked or behind < tonumber(marked) then
    redis.call('SET', rewind, behind)
  end
end
-- a token wakes one blocked worker; a short list bounds stale tokens
local max_tokens = tonumber(ARGV[1])
if #tokens > 0 then
  redis.call('LPUSH', wake, unpack(tokens, 1, math.min(#tokens, max_tokens)))
  redis.call('LTRIM', wake, 0, max_tokens - 1)
end
return written
