#!lua
-- Compare-and-renew: extend the leases of this worker's running jobs, only where the lease is still its own.
-- KEYS: the in-progress key of each job
-- ARGV[1] owner (this worker's id: the value its in-progress keys hold), ARGV[2] lease (ms)
-- Returns the 1-based positions in KEYS of the leases not renewed: i where another worker holds the key, -i where
-- the key is gone (it expired, or the job's outcome was written meanwhile: the caller tells these apart).
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  elseif holder then
    lost[#lost + 1] = i
  else
    lost[#lost + 1] = -i
  end
end
return lost
