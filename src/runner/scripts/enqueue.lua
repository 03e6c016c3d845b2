-- Enqueue one job in one round trip, with arq's keys and semantics.
-- KEYS[1] job key, KEYS[2] result key, KEYS[3] queue zset, KEYS[4] (optional) cron tick marker
-- ARGV[1] job id, ARGV[2] payload, ARGV[3] score (due time, ms), ARGV[4] job key ttl (ms), ARGV[5] marker ttl (ms)
-- Returns 1 when written, 0 when a job or result with this id exists (or the tick was already taken).
if #KEYS == 4 then
  if not redis.call('SET', KEYS[4], ARGV[1], 'NX', 'PX', ARGV[5]) then
    return 0
  end
end
if redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
return 1
