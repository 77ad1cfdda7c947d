-- An error in a finalizer (__gc), in the main state and in workers; run by
-- test/proc_finalizer_error.sh, which reads what this prints and stderr.
-- "during": the object is collected while the code runs (collectgarbage);
-- "at close": the object is alive when the state closes (the pool's
-- close() waits for its worker's state to close).
local par = require "ffipar"

local function during(who)
  local ffi = require "ffi"
  local x = ffi.gc(ffi.new("int[1]"), function() error("finalizer fails during " .. who) end)
  x = nil
  collectgarbage()
  collectgarbage()
  return "collected"
end

local function keep(who)
  local ffi = require "ffi"
  KEPT = ffi.gc(ffi.new("int[1]"), function() error("finalizer fails at close of " .. who) end)
  return "kept"
end

print("main", pcall(during, "main"))
print("worker", par.spawn(during, "worker"):join(10))
local pool = par.pool(1)
print("pool", pool:submit(keep, "pool"):join(10))
pool:close()
keep("main")
