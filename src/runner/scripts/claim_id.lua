#!lua
-- Claim one named job for arq's ``Worker.start_jobs`` (claim_ids.py), as claim.lua claims one: only when it is
-- queued and runs nowhere.
-- KEYS[1] queue zset, KEYS[2] in-progress, KEYS[3] try counter, KEYS[4] job, KEYS[5] abort set
-- ARGV[1] job id, ARGV[2] owner (this worker's id), ARGV[3] lease (ms), ARGV[4] try counter ttl (s)
-- Returns false when it is not queued or runs, else {score, try, payload or '', aborted (0/1)}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return false
end
if not redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3], 'NX') then
  return false
end
local job_try = redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[4])
local payload = redis.call('GET', KEYS[4]) or ''
local aborted = redis.call('ZREM', KEYS[5], ARGV[1])
return {score, job_try, payload, aborted}
