-- test/util.lua: small helpers shared by the tests.
local ffi = require "ffi"
local par = require "ffipar"
local M = {}

-- Collect garbage until finalizers have run (twice is what LuaJIT needs).
function M.gc()
  collectgarbage()
  collectgarbage()
end

-- Live shared objects in the process (see ffipar_obj_live).
function M.live()
  M.gc()
  return tonumber(require("ffipar.lib").C.ffipar_obj_live())
end

-- Wait (bounded) until the live object count is `n`: a worker drops its own
-- reference just after join returns.
function M.live_settles(n)
  return M.wait_until(function() return M.live() == n end, 5) and n or M.live()
end

-- The live count once workers that just finished have let go (bounded):
-- the count is unchanged across three looks 20 ms apart (with one look, a
-- worker of the previous test still closing its state could let go after
-- it: TestShare.testLazyLeavesNothingBehind failed 1 run in 30 so).
function M.settled_live()
  local last, same = M.live(), 0
  for _ = 1, 150 do
    par.sleep(0.02)
    local now = M.live()
    if now == last then
      same = same + 1
      if same == 3 then return now end
    else
      last, same = now, 0
    end
  end
  return last
end

-- Poll cond() until it is true or `limit` seconds pass; returns its value.
function M.wait_until(cond, limit)
  local deadline = par.now() + (limit or 5)
  repeat
    local v = cond()
    if v then return v end
    par.sleep(0.001)
  until par.now() > deadline
  return cond()
end

-- Resident set size of this process in KiB.
function M.rss_kib()
  local f = io.open("/proc/self/statm")
  local _, rss = f:read("*n", "*n")
  f:close()
  return rss * 4
end

-- The text of a temporary file, which is then removed.
function M.take_file(path)
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  os.remove(path)
  return text
end

-- The kernel of examples/mandelbrot.lua (its par.cdef and rows()), loaded
-- with the file's line numbers as chunk "@mandelbrot.lua"; returns rows and
-- the file's text. The pool test and `make bench` run exactly this code.
function M.mandelbrot_rows()
  local src = assert(io.open("examples/mandelbrot.lua")):read("*a")
  local at = assert(src:find("\npar%.cdef [^\n]*\n.-\nlocal function rows%("))
  local body = src:match("\npar%.cdef [^\n]*\n.-\nlocal function rows%(.-\nend\n", at)
  local before = select(2, src:sub(1, at - 1):gsub("\n", ""))   -- lines before body's "\n"
  local chunk = "local par = ...;" .. ("\n"):rep(before) .. body .. "return rows"
  return assert(loadstring(chunk, "@mandelbrot.lua"))(par), src
end

-- A clean start for a JIT check, in this state: every shim function is
-- resolved (so a trace that starts on a loop's first iteration does not
-- abort with "symbol not in cache"), no traces, and fresh hot counters.
-- jit.flush() keeps the 64 hot counters, which loops share by a hash of
-- their bytecode's address: a counter an earlier loop left near its limit
-- starts a trace at once, one left far from it (after an abort) may never
-- get hot in the loop under test. Setting hotloop (to LuaJIT's default)
-- resets them all.
function M.jit_reset()
  local lib = require "ffipar.lib"
  for section, text in pairs(require "ffipar.cdef") do
    if type(text) == "string" then
      lib.declare(section)
      for name in text:gsub("/%*.-%*/", ""):gmatch("[%w_]%s+%**(ffipar_[%w_]+)%(") do
        local _ = lib.C[name]
      end
    end
  end
  -- Finalizers that are due run now, not while the loop under test is being
  -- recorded (one there aborts the trace: "error thrown or hook called
  -- during recording").
  collectgarbage()
  collectgarbage()
  jit.flush()
  jit.opt.start("hotloop=56")
end

-- Run fn() with jit.v logging to a temporary file; returns the log text.
-- Tests use it to check that a hot loop compiles (a "loop" trace, no NYI).
function M.jit_log(fn)
  local v = require "jit.v"
  local path = os.tmpname()
  M.jit_reset()
  v.on(path)
  local ok, err = pcall(fn)
  v.off()
  local log = M.take_file(path)
  assert(ok, err)
  return log
end

-- Nil when the log shows a looping trace (starting at file:line, when
-- given) and no NYI or trace abort; otherwise a message with the log. Two
-- aborts are benign and allowed, both from hot counters being hashed and
-- shared: "leaving loop in root trace", when a loop turned hot on its last
-- iteration, and "inner loop in root trace", when a function turned hot
-- on entry and its trace ran into the loop (the loop gets its own trace,
-- which the check below still requires).
local BENIGN = { "leaving loop in root trace", "inner loop in root trace" }
function M.jit_problem(text, file, line)
  for l in text:gmatch("[^\n]+") do
    local benign = false
    for _, b in ipairs(BENIGN) do benign = benign or l:find(b, 1, true) ~= nil end
    if l:find("NYI", 1, true) or (l:find("TRACE ---", 1, true) and not benign) then
      return "trace aborted:\n" .. text
    end
  end
  local pat = file and ("%[TRACE%s+%d+%s+" .. file:gsub("%.", "%%.") .. ":" .. line .. " loop%]")
    or "%[TRACE%s+%d+%s+%S+ loop%]"
  if not text:find(pat) then
    return "no loop trace" .. (file and (" at " .. file .. ":" .. line) or "") .. ":\n" .. text
  end
end

function M.assert_compiles(lu, text, file, line)
  lu.assertNil(M.jit_problem(text, file, line))
end

-- The line number of the caller's next line (where its loop starts).
function M.next_line()
  return debug.getinfo(2, "l").currentline + 1
end

-- Address of a pointer as a number, for comparisons across states.
function M.addr(p)
  return tonumber(ffi.cast("intptr_t", p))
end

-- The command that starts a child luajit like this one (under `make asan`
-- and `make tsan`, with the sanitizer's runtime preloaded: see run.lua).
function M.luajit()
  local i = -1                      -- the interpreter is arg's lowest index
  while arg and arg[i - 1] do i = i - 1 end
  local exe = os.getenv("FFIPAR_LUAJIT") or (arg and arg[i]) or "luajit"
  local preload = os.getenv("FFIPAR_PRELOAD")
  return preload and ("env LD_PRELOAD=" .. preload .. " " .. exe) or exe
end

-- True when the suite runs under a sanitizer (slower: scale loops down).
M.sanitizer = os.getenv("FFIPAR_SANITIZER")
-- Loops shrink under sanitizers and under valgrind (`make valgrind`, where
-- they run 20-50 times slower): they check memory and ordering there, the
-- plain run checks the counts.
local slow = M.sanitizer or os.getenv("FFIPAR_VALGRIND")
function M.scale(n)
  return slow and math.max(1, math.floor(n / 10)) or n
end

-- Eventfds open in this process (readiness descriptors are eventfds; other
-- descriptors come and go, e.g. a worker state being prepared reads
-- /dev/urandom).
function M.eventfds()
  local n = 0
  local p = io.popen("ls -l /proc/" .. M.pid() .. "/fd 2>/dev/null")
  for line in p:lines() do
    if line:find("anon_inode:[eventfd]", 1, true) then n = n + 1 end
  end
  p:close()
  return n
end

-- This process's id (from /proc/self/stat).
function M.pid()
  local f = assert(io.open("/proc/self/stat"))
  local pid = tonumber(f:read("*a"):match("^(%d+)"))
  f:close()
  return pid
end

-- True when fd is readable within ms milliseconds (0: now).
local pollfd
function M.readable(fd, ms)
  if not pollfd then
    pcall(ffi.cdef, "struct pollfd { int fd; short events; short revents; };"
      .. "int poll(struct pollfd *fds, unsigned long nfds, int timeout);")
    pollfd = ffi.new("struct pollfd[1]")
  end
  pollfd[0].fd, pollfd[0].events, pollfd[0].revents = fd, 1, 0
  return ffi.C.poll(pollfd, 1, ms or 0) == 1
end

return M
