#!lua
-- Pause or resume a queue (pausing.py).
-- KEYS[1] the queue's paused flag, KEYS[2] its idle-worker zset, KEYS[3] its wake-up list
-- ARGV[1] 'pause' or 'resume', ARGV[2] now (ms), ARGV[3] wake-up tokens to push on resume
-- Pause sets the flag (the claim script then claims nothing) and forgets the idle workers, so that no enqueue
-- hands one a job from now on. Resume clears it and wakes the blocked workers, which claim at once.
-- Returns 1 if the state changed, 0 if the queue already was so.
if ARGV[1] == 'pause' then
  local changed = redis.call('SET', KEYS[1], ARGV[2], 'NX') and 1 or 0
  redis.call('DEL', KEYS[2])
  return changed
end
if redis.call('DEL', KEYS[1]) == 0 then
  return 0
end
for _ = 1, tonumber(ARGV[3]) do
  redis.call('LPUSH', KEYS[3], ARGV[2])
end
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[3]) - 1)
return 1
