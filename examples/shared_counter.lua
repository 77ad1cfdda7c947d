-- shared_counter.lua: many workers, one counter, always the exact result.
--
-- The pthread-over-FFI tutorials increment a shared counter from several
-- threads; as written they crash (a Lua callback entered from another
-- thread) or lose updates (a plain read-modify-write). Here every worker is
-- its own LuaJIT state, the counter lives in shared memory, and the update
-- is made safe two ways: under a par.mutex, and as a par.atomic add. A third
-- run without either shows the lost updates the others prevent.
--
-- usage: luajit examples/shared_counter.lua [-w WORKERS] [-n INCREMENTS]
local par = require "ffipar"

local function usage(code)
  io.write([[
usage: shared_counter.lua [-w WORKERS] [-n INCREMENTS] [--unsafe]
  -w WORKERS     workers incrementing the counter (default: par.cpus())
  -n INCREMENTS  increments per worker (default 1000000)
  --unsafe       also run without synchronization, to see updates get lost
  -h, --help     this text
]])
  os.exit(code)
end

local workers, n, unsafe = par.cpus(), 1000000, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "-h" or a == "--help" then usage(0)
  elseif a == "-w" then workers = tonumber(arg[i + 1]); i = i + 1
  elseif a == "-n" then n = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--unsafe" then unsafe = true
  else io.stderr:write("unknown argument: ", a, "\n"); usage(2) end
  i = i + 1
end
for name, v in pairs({ ["-w"] = workers, ["-n"] = n }) do
  if not v or v < 1 or v ~= math.floor(v) then
    io.stderr:write(name, " needs a whole number >= 1\n")
    os.exit(2)
  end
end

-- Start `workers` copies of fn(start, n, ...) together (a barrier lines
-- them up; fn returns the time it started and ended) and return the seconds
-- from the first start to the last end.
local function race(fn, ...)
  local start = par.barrier(workers)
  local ts = {}
  for k = 1, workers do ts[k] = par.spawn(fn, start, n, ...) end
  local first, last = math.huge, -math.huge
  for k = 1, workers do
    local ok, t0, t1 = ts[k]:join()
    if not ok then error(t0) end
    first, last = math.min(first, t0), math.max(last, t1)
  end
  return last - first
end

local expected = workers * n
local function report(name, value, seconds)
  local verdict = value == expected and "exact" or ("%d LOST"):format(expected - value)
  if name == "unsafe" and value == expected then verdict = "exact by luck" end
  print(("%-8s %10d of %d  %-14s %8.4f s  %6.1f ns/increment"):format(name, value, expected,
    verdict, seconds, seconds / expected * 1e9))
end

-- With a mutex: the counter is a plain int64_t in shared memory.
local count = par.new("int64_t")
local m = par.mutex()
local t = race(function(start, n, count, m)
  local par = require "ffipar"
  start:wait()
  local t0 = par.now()
  for _ = 1, n do
    m:lock()
    count[0] = count[0] + 1
    m:unlock()
  end
  return t0, par.now()
end, count, m)
report("mutex", tonumber(count[0]), t)

-- With an atomic.
local a = par.atomic(0)
t = race(function(start, n, a)
  local par = require "ffipar"
  start:wait()
  local t0 = par.now()
  for _ = 1, n do a:add(1) end
  return t0, par.now()
end, a)
report("atomic", a:load(), t)

if unsafe then
  local plain = par.new("int64_t")
  t = race(function(start, n, c)
    local par = require "ffipar"
    start:wait()
    local t0 = par.now()
    for _ = 1, n do c[0] = c[0] + 1 end
    return t0, par.now()
  end, plain)
  report("unsafe", tonumber(plain[0]), t)
end
