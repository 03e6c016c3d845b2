-- Enqueue one job in one round trip, with arq's keys and semantics, and wake or feed one idle worker.
-- KEYS[1] job key, KEYS[2] result key, KEYS[3] queue zset, KEYS[4] wake-up list, KEYS[5] idle-worker zset,
-- KEYS[6] (optional) cron tick marker
-- ARGV[1] job id, ARGV[2] payload, ARGV[3] score (due time, ms), ARGV[4] job key ttl (ms),
-- ARGV[5] max wake-up tokens kept, ARGV[6] now (ms), ARGV[7] marker ttl (ms)
-- Returns 1 when written, 0 when a job or result with this id exists (or the tick was already taken).
if #KEYS == 6 then
  if not redis.call('SET', KEYS[6], ARGV[1], 'NX', 'PX', ARGV[7]) then
    return 0
  end
end
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
local id = ARGV[1]
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], id)
local now = tonumber(ARGV[6])
if tonumber(ARGV[3]) <= now then
  -- idle hand-off: a worker that registered as idle (member "<worker id>|<in-progress ttl ms>", scored by
  -- expiry) gets the job already claimed, on its own list, so its blocking pop returns a job, not a token
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
  local idle = redis.call('ZRANGE', KEYS[5], -1, -1)
  if idle[1] then
    local member = idle[1]
    local sep = string.find(member, '|', 1, true)
    redis.call('ZREM', KEYS[5], member)
    redis.call('SET', 'arq:in-progress:' .. id, '1', 'PX', string.sub(member, sep + 1))
    local try = redis.call('INCR', 'arq:retry:' .. id)
    redis.call('EXPIRE', 'arq:retry:' .. id, 88400)
    local packed = #id .. ':' .. id .. ARGV[3] .. ':' .. try .. ':' .. ARGV[2]
    redis.call('LPUSH', 'jobs:worker:' .. string.sub(member, 1, sep - 1), packed)
    return 1
  end
end
-- one token wakes one blocked worker; a short list bounds stale tokens while every worker is busy
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
return 1
