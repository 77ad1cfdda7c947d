-- Helper of proc_exit_detached.sh: start workers that are still running
-- (hot JIT loops, coroutines, blocking sleeps, a worker holding shared
-- memory) and leave while they run. MODE: "end" (fall off the end: the
-- main state is closed), "exit" (os.exit(0): not closed), "close"
-- (os.exit(0, true)), "error" (the main chunk raises: exit status 1).
local par = require "ffipar"
local mode = arg[1] or "end"

local a = par.array("double", 1024)
local ts = {}
ts[#ts + 1] = par.spawn(function(a)
  local i = 0
  while true do i = i + 1; a[i % 1024] = i end        -- hot loop, never ends
end, a)
ts[#ts + 1] = par.spawn(function()
  local co = coroutine.wrap(function() while true do coroutine.yield(1) end end)
  local s = 0
  while true do s = s + co() end
end)
ts[#ts + 1] = par.spawn(function()
  local par = require "ffipar"
  while true do par.sleep(0.001) end
end)
ts[#ts + 1] = par.spawn(function()
  local par = require "ffipar"
  local inner = par.spawn(function() while true do end end)
  return inner:join()                                    -- blocked in join
end)
for i = 1, #ts do
  if i % 2 == 0 then ts[i]:detach() end
end
-- Let them all get going (and the JIT compile their loops).
par.sleep(0.1)
assert(ts[1]:status() == "running")

if mode == "exit" then os.exit(0)
elseif mode == "close" then os.exit(0, true)
elseif mode == "error" then error("main fails on purpose")
end
