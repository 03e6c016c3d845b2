-- Record the outcome of a batch of jobs in one call, each as arq's finish_job would.
-- KEYS[1] queue zset, KEYS[2] wake-up list (a job put back wakes an idle worker to re-plan its wait)
-- ARGV[1] max wake-up tokens kept, then
-- ARGV[2..]: groups of four: job id, action, result bytes ('' for none), number
--   action 'done':  store the result for `number` ms (-1: forever, 0: not kept), then delete the job,
--                   its try counter and in-progress key, and remove it from the queue and the abort set
--   action 'again': release the in-progress key and put the job back in the queue due at `number` (ms);
--                   a result ('' for none) is the failed try's error, appended to jobs:errors:<id> for a day
--   action 'back':  as 'again', and give back the try it spent (a job interrupted by a shutdown)
local queue = KEYS[1]
local again = false
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  local action = ARGV[i + 1]
  if action == 'done' then
    local ttl = tonumber(ARGV[i + 3])
    if ARGV[i + 2] ~= '' and ttl ~= 0 then
      if ttl < 0 then
        redis.call('SET', 'arq:result:' .. id, ARGV[i + 2])
      else
        redis.call('SET', 'arq:result:' .. id, ARGV[i + 2], 'PX', ttl)
      end
    end
    redis.call('DEL', 'arq:retry:' .. id, 'arq:in-progress:' .. id, 'arq:job:' .. id)
    redis.call('ZREM', queue, id)
    redis.call('ZREM', 'arq:abort', id)
  else
    redis.call('DEL', 'arq:in-progress:' .. id)
    redis.call('ZADD', queue, 'XX', ARGV[i + 3], id)
    if ARGV[i + 2] ~= '' then
      redis.call('RPUSH', 'jobs:errors:' .. id, ARGV[i + 2])
      redis.call('PEXPIRE', 'jobs:errors:' .. id, 86400000)
    end
    if action == 'back' and tonumber(redis.call('GET', 'arq:retry:' .. id) or '0') > 0 then
      redis.call('DECR', 'arq:retry:' .. id)
    end
    again = true
  end
end
if again then
  redis.call('LPUSH', KEYS[2], '1')
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[1]) - 1)
end
return (#ARGV - 1) / 4
