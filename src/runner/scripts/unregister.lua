#!lua
-- A worker leaves the idle set and takes back what was handed to it but not started (claim.py ``unregister``).
-- KEYS[1] idle-worker zset, KEYS[2] the worker's own list
-- ARGV[1] the worker's idle member
-- Returns the packed jobs of its list (enqueue.lua's format), which the caller puts back in the queue.
redis.call('ZREM', KEYS[1], ARGV[1])
local leftovers = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
return leftovers
