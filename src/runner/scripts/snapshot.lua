#!lua flags=no-writes
-- One job's state read at one instant (a job finishing between two reads would look "not found").
-- KEYS[1] result, KEYS[2] job, KEYS[3] in-progress, KEYS[4] queue zset
-- ARGV[1] job id
-- Returns {result or false, job exists (0/1), in progress (0/1), score in the queue or false}
local score = redis.call('ZSCORE', KEYS[4], ARGV[1])
return {redis.call('GET', KEYS[1]), redis.call('EXISTS', KEYS[2]), redis.call('EXISTS', KEYS[3]), score}
