#!lua
-- Compare-and-renew: extend the leases of this worker's running jobs, only where the lease is still its own.
-- KEYS: the in-progress key of each job
-- ARGV[1] owner (this worker's id: the value its in-progress keys hold), ARGV[2] lease (ms)
-- Returns the 1-based positions in KEYS of the leases that are gone or held by someone else (not renewed).
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    lost[#lost + 1] = i
  end
end
return lost
