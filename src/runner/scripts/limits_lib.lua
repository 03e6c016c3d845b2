#!lua
-- Concurrency and rate limits (limits.py), shared by claim.lua, finish.lua and limits.lua (included, not run alone).
-- A job of a limited function has a side entry (LIMIT_OF_KEY_PREFIX .. id: f function, k key, r reserved start);
-- its bucket is the function, or the function and the key. Per bucket, with B = queue .. '\n' .. bucket:
--   LIMIT_RUNNING_KEY_PREFIX .. B  zset of jobs holding a slot, scored by when their lease was last seen to end
--   LIMIT_HELD_KEY_PREFIX .. B     zset of jobs waiting for a slot, scored by their due time (their order); a held
--                                  job stays in the queue at HELD_SCORE_MS, where no claim reaches it
--   LIMIT_RATE_KEY_PREFIX .. B     the rate's theoretical arrival time (GCRA, ms)
-- LIMIT_BUCKETS_KEY_PREFIX .. queue is the set of buckets with running or held jobs, LIMIT_WAITING_KEY_PREFIX .. queue
-- the set of those with held jobs (the ones a sweep looks at).

-- max concurrency, rate count, rate period (ms) of fn in queue (nil for each not set); nil when fn has no entry
local function limit_config(queue, fn)
  local raw = redis.call('HGET', LIMITS_KEY_PREFIX .. queue, fn)
  if not raw then
    return nil
  end
  local max, count, period = string.match(raw, '^(%d*)|(%d*)|(%d*)$')
  return tonumber(max), tonumber(count), tonumber(period)
end

local function bucket_of(entry_fn, entry_key)
  if entry_key then
    return entry_fn .. '\n' .. entry_key
  end
  return entry_fn
end

local function running_key(queue, bucket)
  return LIMIT_RUNNING_KEY_PREFIX .. queue .. '\n' .. bucket
end

local function held_key(queue, bucket)
  return LIMIT_HELD_KEY_PREFIX .. queue .. '\n' .. bucket
end

-- The side entry of a job of a limited function, written with the job (enqueue.lua, workflow.lua): `limit` is its
-- function, and for a limit per key a newline and the key; it lives as long as the job key (`ttl_ms`).
local function note_limit(id, limit, ttl_ms)
  local side = LIMIT_OF_KEY_PREFIX .. id
  local cut = string.find(limit, '\n', 1, true)
  if cut then
    redis.call('HSET', side, 'f', string.sub(limit, 1, cut - 1), 'k', string.sub(limit, cut + 1))
  else
    redis.call('HSET', side, 'f', limit)
  end
  redis.call('PEXPIRE', side, ttl_ms)
end

-- Slots whose recorded lease end has passed: kept (with the lease's new end) while the job's in-progress key
-- lives, given back when it is gone (a killed worker's job, a promotion never claimed).
local function prune(running, now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', running, '-inf', now)) do
    local ttl = redis.call('PTTL', IN_PROGRESS_KEY_PREFIX .. id)
    if ttl == -2 then
      redis.call('ZREM', running, id)
    else
      redis.call('ZADD', running, now + (ttl > 0 and ttl or 60000), id)
    end
  end
end

-- A bucket with no held job leaves the set of buckets where jobs wait; with no running one either, the set of all.
local function untrack(queue, bucket, running, held)
  if redis.call('EXISTS', held) == 0 then
    redis.call('SREM', LIMIT_WAITING_KEY_PREFIX .. queue, bucket)
    if redis.call('EXISTS', running) == 0 then
      redis.call('SREM', LIMIT_BUCKETS_KEY_PREFIX .. queue, bucket)
    end
  end
end

-- Job `id` leaves its bucket without running (aborted or purged before it started, or its job key expired while it
-- was held): its held place, its slot if it was given one, and its side entry go. Nothing is promoted here: a slot it
-- held (a promotion not yet claimed) comes back to the jobs behind it at the next finish or sweep of the bucket.
local function forget(queue, id)
  local side = LIMIT_OF_KEY_PREFIX .. id
  local entry = redis.call('HMGET', side, 'f', 'k')
  if not entry[1] then
    return
  end
  redis.call('DEL', side)
  local bucket = bucket_of(entry[1], entry[2])
  local running, held = running_key(queue, bucket), held_key(queue, bucket)
  redis.call('ZREM', held, id)
  redis.call('ZREM', running, id)
  untrack(queue, bucket, running, held)
end

-- Move held jobs of a bucket back into the queue, in their order, while slots are free (all of them, up to `most`,
-- when max is nil: the limit was lifted); each promoted job is given its slot until `grace` ms from now, so that no
-- newcomer takes it first. A promoted job goes back at its own due time (a priority's head start and the time it
-- waited count, as for any job: it is not put behind the jobs enqueued while it was held); every worker's claim
-- cursor may be past that place, so the queue's rewind marker (see claim.lua) makes the next claim scan from there.
-- Returns how many were promoted.
local function promote(queue, bucket, max, now, grace, most)
  local running, held = running_key(queue, bucket), held_key(queue, bucket)
  local free = most
  if max then
    prune(running, now)
    free = math.min(most, max - redis.call('ZCARD', running))
  end
  local moved = 0
  local earliest = false
  while free > 0 do
    local head = redis.call('ZPOPMIN', held)
    if #head == 0 then
      break
    end
    local id = head[1]
    local due = math.min(tonumber(head[2]), now)
    -- still held (not aborted, purged or expired meanwhile)
    local score = tonumber(redis.call('ZSCORE', queue, id) or '0')
    local alive = redis.call('EXISTS', JOB_KEY_PREFIX .. id) == 1
    if score >= HELD_SCORE_MS and not alive then
      -- its job key expired while it waited: nobody could run it, and no claim reaches the held score to clean up
      redis.call('ZREM', queue, id)
      redis.call('DEL', LIMIT_OF_KEY_PREFIX .. id)
    elseif score >= HELD_SCORE_MS then
      redis.call('ZADD', queue, due, id)
      if not earliest or due < earliest then
        earliest = due
      end
      if max then
        redis.call('ZADD', running, now + grace, id)
      end
      free = free - 1
      moved = moved + 1
    end
  end
  if earliest and earliest < now then
    local rewind = REWIND_KEY_PREFIX .. queue
    local marked = redis.call('GET', rewind)
    if not marked or earliest < tonumber(marked) then
      redis.call('SET', rewind, string.format('%d', earliest))
    end
  end
  untrack(queue, bucket, running, held)
  return moved
end

-- A claim of job `id` (due at `score`) of a queue with limits: true when it may start now (it then holds its
-- slot), else false and the job is held (no slot) or deferred to the start its rate reserved for it; the second
-- value is then how many held jobs were promoted meanwhile (a slot came back by a lease's end).
local function admit(queue, id, score, now, grace)
  local entry = redis.call('HMGET', LIMIT_OF_KEY_PREFIX .. id, 'f', 'k', 'r')
  if not entry[1] then
    return true, 0
  end
  local max, count, period = limit_config(queue, entry[1])
  if not max and not count then
    return true, 0
  end
  local bucket = bucket_of(entry[1], entry[2])
  local running = running_key(queue, bucket)
  if max and not redis.call('ZSCORE', running, id) then
    -- (a member already is this job's slot: given at its promotion, or held by a killed worker's try)
    if redis.call('ZCARD', running) >= max then
      prune(running, now)
    end
    local held = held_key(queue, bucket)
    if redis.call('ZCARD', running) >= max or redis.call('EXISTS', held) == 1 then
      redis.call('ZADD', held, score, id)
      redis.call('ZADD', queue, HELD_SCORE_MS, id)
      redis.call('SADD', LIMIT_BUCKETS_KEY_PREFIX .. queue, bucket)
      redis.call('SADD', LIMIT_WAITING_KEY_PREFIX .. queue, bucket)
      -- jobs waited behind a full limit whose slots came back by leases' ends: promote them, in order
      return false, promote(queue, bucket, max, now, grace, max)
    end
  end
  if count then
    if entry[3] and tonumber(entry[3]) <= now then
      redis.call('HDEL', LIMIT_OF_KEY_PREFIX .. id, 'r')  -- its start was reserved: the rate is already counted
    else
      -- GCRA without burst: starts are spaced period/count apart; a job over the rate reserves the next start
      local rate = LIMIT_RATE_KEY_PREFIX .. queue .. '\n' .. bucket
      local at = math.max(tonumber(redis.call('GET', rate) or '0'), now)
      local after = at + period / count
      redis.call('SET', rate, string.format('%.3f', after), 'PX', math.ceil(after - now) + 1000)
      if at > now then
        local due = math.ceil(at)
        redis.call('HSET', LIMIT_OF_KEY_PREFIX .. id, 'r', due)
        redis.call('ZADD', queue, due, id)
        if max then
          redis.call('ZREM', running, id)
        end
        return false, 0
      end
    end
  end
  if max then
    redis.call('ZADD', running, now + grace, id)
    redis.call('SADD', LIMIT_BUCKETS_KEY_PREFIX .. queue, bucket)
  end
  return true, 0
end

-- A job's try ended (`done`: for good): its slot is given back and the next held jobs of its bucket are promoted.
-- The side entry of a job done goes with it, but a dead job's stays as long as its dead letter (`keep_ms`), so that
-- a requeue brings the job back with its limits. Returns how many were promoted.
local function release(queue, id, done, now, grace, keep_ms)
  local side = LIMIT_OF_KEY_PREFIX .. id
  local entry = redis.call('HMGET', side, 'f', 'k')
  if not entry[1] then
    return 0
  end
  if done and keep_ms then
    redis.call('HDEL', side, 'r')
    redis.call('PEXPIRE', side, keep_ms)
  elseif done then
    redis.call('DEL', side)
  end
  local bucket = bucket_of(entry[1], entry[2])
  local running = running_key(queue, bucket)
  redis.call('ZREM', running, id)
  if redis.call('EXISTS', held_key(queue, bucket)) == 0 then  -- nobody waits (most often): nothing to promote
    if redis.call('EXISTS', running) == 0 then
      redis.call('SREM', LIMIT_BUCKETS_KEY_PREFIX .. queue, bucket)
    end
    return 0
  end
  local max = limit_config(queue, entry[1])
  return promote(queue, bucket, max, now, grace, max or 1000)
end

-- Look after up to `most` buckets where jobs wait (random ones): slots whose lease ended with nobody left to finish
-- them come back and their held jobs are promoted. (A bucket where nobody waits needs no sweep: its next job's claim
-- takes back such slots.) Returns how many were promoted.
local function sweep(queue, now, grace, most)
  local moved = 0
  for _, bucket in ipairs(redis.call('SRANDMEMBER', LIMIT_WAITING_KEY_PREFIX .. queue, most)) do
    local fn = string.match(bucket, '^([^\n]*)')
    local max = limit_config(queue, fn)
    moved = moved + promote(queue, bucket, max, now, grace, max or 1000)
  end
  return moved
end
