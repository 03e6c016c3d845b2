#!lua
-- Delete one page of a queue's jobs that are not running (``hasten purge``): their queue entry, definition and try
-- counter. Running jobs (in-progress key present) stay, and are skipped by the next page.
-- KEYS[1] queue zset; ARGV[1] rank to start at (the running jobs kept so far sit before it), ARGV[2] page size
-- A job held by its function's limits leaves its bucket with it (limits_lib.lua).
-- Returns {rows examined, rows deleted}; no rows examined means the end of the queue.
--#include limits_lib
local queue = KEYS[1]
local start = tonumber(ARGV[1])
local ids = redis.call('ZRANGE', queue, start, start + tonumber(ARGV[2]) - 1)
local deleted = 0
for _, id in ipairs(ids) do
  if redis.call('EXISTS', IN_PROGRESS_KEY_PREFIX .. id) == 0 then
    redis.call('ZREM', queue, id)
    redis.call('DEL', JOB_KEY_PREFIX .. id, RETRY_KEY_PREFIX .. id)
    forget(queue, id)
    deleted = deleted + 1
  end
end
return {#ids, deleted}
