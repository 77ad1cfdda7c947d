-- Run by test/proc_thread_limit.sh under a low address-space limit (ulimit
-- -v): spawns workers that wait until a spawn fails for want of a thread,
-- and checks the error says so. Exit status 0 = pass.
local par = require "ffipar"

local go = par.semaphore(0)
local ts, err = {}, nil
for i = 1, 2000 do
  local ok, t = pcall(par.spawn, function(go) return go:acquire(30) end, go)
  if not ok then err = t; break end
  ts[i] = t
end
go:release(#ts)
for _, t in ipairs(ts) do assert(t:join(30)) end
assert(err, "2000 spawns and no limit reached")
io.write(("spawn %d: %s\n"):format(#ts + 1, err))
assert(err:find("ffipar.spawn: Resource temporarily unavailable (thread limit?)", 1, true), err)

-- A pool that cannot start its workers says so too (and the process lives).
local held = {}
for i = 1, 2000 do
  local ok, t = pcall(par.spawn, function(go) return go:acquire(30) end, go)
  if not ok then break end
  held[i] = t
end
local ok, perr = pcall(par.pool, 64)
go:release(#held)
for _, t in ipairs(held) do assert(t:join(30)) end
io.write(("pool: %s\n"):format(tostring(perr)))
assert(not ok, "the pool started")
assert(perr:find("Resource temporarily unavailable (thread limit?)", 1, true), perr)
print("ok")
