-- heavy_computation.lua: a heavy computation split across workers.
--
-- Sums sqrt(i) for i = 1..N, first on one worker, then split into equal
-- ranges over W workers (each its own thread and LuaJIT state), and prints
-- the time of each and the speedup. The naive FFI recipe for this (a Lua
-- function handed to pthread_create) crashes; here each worker gets the
-- function as bytecode and runs it in its own state.
--
-- usage: luajit examples/heavy_computation.lua [-n N] [-w WORKERS]
local par = require "ffipar"

local function usage(code)
  io.write([[
usage: heavy_computation.lua [-n N] [-w WORKERS]
  -n N        how many square roots to sum (default 200000000)
  -w WORKERS  workers for the parallel run (default: par.cpus())
  -h, --help  this text
]])
  os.exit(code)
end

local n, workers = 2e8, par.cpus()
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "-h" or a == "--help" then usage(0)
  elseif a == "-n" then n = tonumber(arg[i + 1]); i = i + 1
  elseif a == "-w" then workers = tonumber(arg[i + 1]); i = i + 1
  else io.stderr:write("unknown argument: ", a, "\n"); usage(2) end
  i = i + 1
end
if not n or n < 1 or n ~= math.floor(n) then io.stderr:write("-n needs a whole number >= 1\n"); os.exit(2) end
if not workers or workers < 1 or workers ~= math.floor(workers) then
  io.stderr:write("-w needs a whole number >= 1\n"); os.exit(2)
end

-- The worker: sum sqrt(i) over [lo, hi].
local function partial(lo, hi)
  local sqrt = math.sqrt
  local s = 0
  for k = lo, hi do s = s + sqrt(k) end
  return s
end

local function run(w)
  local t0 = par.now()
  local threads, step = {}, math.ceil(n / w)
  for k = 0, w - 1 do
    local lo, hi = k * step + 1, math.min(n, (k + 1) * step)
    if lo <= hi then threads[#threads + 1] = par.spawn(partial, lo, hi) end
  end
  local total = 0
  for _, t in ipairs(threads) do
    local ok, s = t:join()
    if not ok then error(s) end
    total = total + s
  end
  return total, par.now() - t0
end

local s1, t1 = run(1)
local sw, tw = run(workers)
print(("sum of sqrt(i), i = 1..%d"):format(n))
print(("  1 worker : %.6f  in %.3f s"):format(s1, t1))
print(("  %d workers: %.6f  in %.3f s"):format(workers, sw, tw))
print(("  speedup  : %.2fx on %d CPUs (relative difference of the sums %.1e)")
  :format(t1 / tw, par.cpus(), math.abs(sw - s1) / s1))
