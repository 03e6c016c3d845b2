#!lua
-- Put a dead job back in its queue, as it was first enqueued, and take it out of the dead-letter queue.
-- KEYS[1] queue zset, KEYS[2] dead-letter zset, KEYS[3] wake-up list, then the job's keys: KEYS[4] job, KEYS[5]
--   result, KEYS[6] try counter, KEYS[7] in-progress, KEYS[8] try errors, KEYS[9] progress, KEYS[10] dead-letter record
-- ARGV[1] job id, ARGV[2] now (ms), ARGV[3] job key ttl (ms), ARGV[4] payload, ARGV[5] max wake-up tokens kept
-- Returns 1 when requeued, 0 when it was not in the dead-letter queue.
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[2], id) then
  return 0
end
redis.call('DEL', KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
redis.call('ZREM', KEYS[2], id)
redis.call('SET', KEYS[4], ARGV[4], 'PX', ARGV[3])
-- a job of a limited function kept its limit entry (limits.py) with its dead letter: it lives as long as the job now
redis.call('PEXPIRE', LIMIT_OF_KEY_PREFIX .. id, ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], id)
redis.call('LPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return 1
