-- test/run.lua: the whole suite. Runs every test/test_*.lua under luaunit in
-- this process, then every external test as its own process (C tests built
-- from test/c/*.c, test/proc_*.lua scripts, test/proc_*.sh scripts), each
-- with a time bound, and ends with the line "N passed, M failed".
-- Arguments go to luaunit (-v, -p PATTERN); FFIPAR_ONLY=lua|proc runs a part.
local lu = require "luaunit"

-- Under `make asan`/`make tsan` the sanitizer runtime is preloaded into
-- luajit; a shell started with it preloaded crashes, so children get it
-- back only where they start luajit.
local preload = os.getenv("FFIPAR_SANITIZER") and os.getenv("LD_PRELOAD")
if preload then
  local ffi = require "ffi"
  ffi.cdef "int unsetenv(const char *name); int setenv(const char *, const char *, int);"
  ffi.C.setenv("FFIPAR_PRELOAD", preload, 1)        -- for util.luajit()
  ffi.C.unsetenv("LD_PRELOAD")
end

local function ls(pattern)
  local out = {}
  local p = io.popen("ls " .. pattern .. " 2>/dev/null")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local only = os.getenv("FFIPAR_ONLY")
local passed, failed, failures = 0, 0, {}

if only ~= "proc" then
  for _, f in ipairs(ls("test/test_*.lua")) do
    require(f:match("test/(.*)%.lua$"))
  end
  local runner = lu.LuaUnit.new()
  runner:runSuite(...)
  local r = runner.result
  passed = passed + r.successCount
  failed = failed + r.notSuccessCount
  for _, t in ipairs(r.failedTests or {}) do failures[#failures + 1] = t.testName end
  for _, t in ipairs(r.errorTests or {}) do failures[#failures + 1] = t.testName end
end

-- The interpreter running us, for child scripts (luajit or luajit2).
local luajit = os.getenv("FFIPAR_LUAJIT") or arg[-1] or "luajit"
if preload then
  luajit = "env LD_PRELOAD=" .. preload .. " " .. luajit
end
local LIMIT = tonumber(os.getenv("FFIPAR_PROC_TIMEOUT")) or 600

local function external(name, cmd)
  local log = os.tmpname()
  local t0 = os.time()
  local ok = os.execute(("timeout -k 5 %d %s >%s 2>&1"):format(LIMIT, cmd, log))
  ok = ok == 0 or ok == true
  local f = io.open(log, "rb")
  local out = f and f:read("*a") or ""
  if f then f:close() end
  os.remove(log)
  if ok then
    passed = passed + 1
    io.write(("ok    %-40s %3ds\n"):format(name, os.time() - t0))
  else
    failed = failed + 1
    failures[#failures + 1] = name
    io.write(("FAIL  %s\n%s\n"):format(name, out:sub(-4000)))
  end
  io.flush()
end

-- Under `make valgrind` (this process runs in valgrind) the C tests run in
-- it too; the process tests (installs, exits, examples) are left out.
local valgrind = os.getenv("FFIPAR_VALGRIND")

if only ~= "lua" then
  print("\nexternal tests (each its own process):")
  for _, f in ipairs(ls("test/c/*")) do
    if not f:match("%.[ch]$") then external(f, valgrind and (valgrind .. " " .. f) or f) end
  end
  if valgrind then print("(process tests are not run under valgrind)") else
    for _, f in ipairs(ls("test/proc_*.lua")) do external(f, luajit .. " " .. f) end
    for _, f in ipairs(ls("test/proc_*.sh")) do
      external(f, ("env FFIPAR_LUAJIT='%s' bash %s"):format(luajit, f))
    end
  end
end

if #failures > 0 then print("\nfailed: " .. table.concat(failures, ", ")) end
print(("%d passed, %d failed"):format(passed, failed))
os.exit(failed == 0 and 0 or 1)
