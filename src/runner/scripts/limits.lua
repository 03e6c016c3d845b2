#!lua
-- Write the limits of a queue's functions (limits.py).
-- KEYS[1] the queue's limits hash, KEYS[2] its wake-up list
-- ARGV[1] 'declare' or 'set', ARGV[2] now (ms), ARGV[3] how long a promoted job keeps its slot unclaimed (ms),
--   then 'declare': pairs of function, limit ('<max>|<count>|<period ms>'); 'set': one function and its limit
-- declare (a worker's start): a function's limit becomes the declared one unless it was changed at run time (it
--   differs from the last declared one, kept as 'default|<function>'), which stays.
-- set (run time): only a function some worker declared; held jobs the new limit lets run are promoted at once.
-- Returns 1, or 0 when 'set' names a function with no limits.
--#include limits_lib
local limits = KEYS[1]
if ARGV[1] == 'declare' then
  for i = 4, #ARGV, 2 do
    local current = redis.call('HGET', limits, ARGV[i])
    if not current or current == redis.call('HGET', limits, 'default|' .. ARGV[i]) then
      redis.call('HSET', limits, ARGV[i], ARGV[i + 1])
    end
    redis.call('HSET', limits, 'default|' .. ARGV[i], ARGV[i + 1])
  end
  return 1
end
local fn = ARGV[4]
if redis.call('HEXISTS', limits, fn) == 0 then
  return 0
end
redis.call('HSET', limits, fn, ARGV[5])
local queue = string.sub(limits, #LIMITS_KEY_PREFIX + 1)
local now = tonumber(ARGV[2])
local max = limit_config(queue, fn)
local moved = 0
for _, bucket in ipairs(redis.call('SMEMBERS', LIMIT_BUCKETS_KEY_PREFIX .. queue)) do
  if bucket == fn or string.sub(bucket, 1, #fn + 1) == fn .. '\n' then
    moved = moved + promote(queue, bucket, max, now, tonumber(ARGV[3]), max or 1000)
  end
end
if moved > 0 then
  redis.call('LPUSH', KEYS[2], string.format('%d', now))
  redis.call('LTRIM', KEYS[2], 0, MAX_WAKE_TOKENS - 1)
end
return 1
