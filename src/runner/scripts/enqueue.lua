-- Enqueue one job in one round trip, with arq's keys and semantics, and wake one idle worker.
-- KEYS[1] job key, KEYS[2] result key, KEYS[3] queue zset, KEYS[4] wake-up list, KEYS[5] (optional) cron tick marker
-- ARGV[1] job id, ARGV[2] payload, ARGV[3] score (due time, ms), ARGV[4] job key ttl (ms),
-- ARGV[5] max wake-up tokens kept, ARGV[6] marker ttl (ms)
-- Returns 1 when written, 0 when a job or result with this id exists (or the tick was already taken).
if #KEYS == 5 then
  if not redis.call('SET', KEYS[5], ARGV[1], 'NX', 'PX', ARGV[6]) then
    return 0
  end
end
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
-- one token wakes one blocked worker; a short list bounds stale tokens while every worker is busy
redis.call('LPUSH', KEYS[4], '1')
redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
return 1
