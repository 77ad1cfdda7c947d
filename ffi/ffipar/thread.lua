-- ffipar.thread: workers. par.spawn(fn, ...) starts an OS thread with its
-- own LuaJIT state, runs fn(...) there and keeps its results for t:join().
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("thread")

local M = {}

-- Put the bytecode of every ffipar module into the shim's cache, once, so
-- worker states load ffipar without searching or parsing files.
local cached = false
function M.cache_modules()
  if cached then return end
  cached = true
  C.ffipar_state_own_alloc((ffi.abi("gc64") or not ffi.abi("64bit")) and 1 or 0)
  local names = { "ffipar", "ffipar.lib", "ffipar.cdef", "ffipar.wire", "ffipar.codec",
    "ffipar.worker" }
  for _, mod in ipairs(require("ffipar")._modules) do names[#names + 1] = "ffipar." .. mod end
  for _, name in ipairs(names) do
    local path = package.searchpath(name, package.path)
    local chunk = path and loadfile(path)
    if chunk then
      local code = string.dump(chunk)
      C.ffipar_modcache_put(name, code, #code)
    end
  end
end

local STATUS = { [0] = "running", "done", "failed", "cancelled" }
local detached = setmetatable({}, { __mode = "k" })
local out = ffi.new("ffipar_thread *[1]")

local istype = ffi.istype
local thread_p = ffi.typeof("struct ffipar_thread *")

local function bad_self(fname, v)
  lib.bad_self(fname, "thread", "t", v)
end

local thread = {}
local outcome

-- A worker's error that names a global it does not have ("attempt to call
-- global 'helper' (a nil value)") gets a hint when this state has one.
local function global_hint(err)
  local name = err:match("global '([%a_][%w_]*)' %(a nil value%)")
  if not name or rawget(_G, name) == nil then return err end
  local hint = ("'%s' is a global of the spawning thread; globals do not cross, make it "
    .. "a local or an upvalue"):format(name)
  local at = err:find("\nstack traceback:", 1, true)
  if not at then return err .. "\n" .. hint end
  return err:sub(1, at) .. hint .. err:sub(at)
end

--- Wait for the worker: true, results... | false, error, traceback | nil,
-- "cancelled" | nil, "timeout". A string error ends with the traceback
-- too; any other error value comes back as it was raised (copied like
-- results).
function thread:join(timeout)
  if not istype(thread_p, self) or self == nil then bad_self("t:join", self) end
  if detached[self] then lib.argerror("t:join", "the thread is detached") end
  if C.ffipar_thread_id(self) == C.ffipar_self_id() then
    lib.argerror("t:join", "a thread cannot join itself (it would wait for itself)")
  end
  local rc = C.ffipar_thread_join(self, lib.timeout(timeout, "t:join"))
  if rc ~= 0 then return lib.fail(rc) end
  return outcome(self)
end

-- What a successful join returns.
function outcome(self)
  local st = C.ffipar_thread_status(self)
  if st == 1 then
    local r = codec.decode(C.ffipar_thread_results(self))
    return true, unpack(r, 1, r.n)
  elseif st == 3 then
    return nil, "cancelled"
  end
  local value = C.ffipar_thread_results(self)
  if value ~= nil then                 -- an error value that is not a string
    local r = codec.decode(value)
    return false, r[1], r[2]
  end
  local p = C.ffipar_thread_error(self, lib.lenp)
  local err = global_hint(ffi.string(p, lib.lenp[0]))
  local at = err:find("\nstack traceback:", 1, true)
  return false, err, at and err:sub(at + 1) or ""
end

--- "running" | "done" | "failed" | "cancelled".
function thread:status()
  if not istype(thread_p, self) or self == nil then bad_self("t:status", self) end
  return STATUS[C.ffipar_thread_status(self)]
end

--- Ask the worker to stop (cooperative: see par.cancelled()).
function thread:cancel()
  if not istype(thread_p, self) or self == nil then bad_self("t:cancel", self) end
  C.ffipar_thread_cancel(self)
end

--- Give up the right to join; the worker runs on and cleans up after itself.
function thread:detach()
  if not istype(thread_p, self) or self == nil then bad_self("t:detach", self) end
  detached[self] = true
end

--- The worker's thread id (as in race-check messages).
function thread:id()
  if not istype(thread_p, self) or self == nil then bad_self("t:id", self) end
  return C.ffipar_thread_id(self)
end

local fdp = ffi.new("int[1]")

--- A descriptor for event loops: readable from the end until the first
-- successful join; made on first call, closed with the thread (or by
-- t:close_fd()).
function thread:fd()
  if not istype(thread_p, self) or self == nil then bad_self("t:fd", self) end
  if detached[self] then lib.argerror("t:fd", "the thread is detached") end
  local rc = C.ffipar_thread_fd(self, fdp)
  if rc == C.FFIPAR_ECLOSED then lib.argerror("t:fd", "the descriptor was closed (t:close_fd())") end
  if rc ~= 0 then lib.fd_error("t:fd") end
  return fdp[0]
end

--- Close the descriptor now instead of when the thread is collected (stop
-- polling it first). Idempotent.
function thread:close_fd()
  if not istype(thread_p, self) or self == nil then bad_self("t:close_fd", self) end
  C.ffipar_thread_fd_close(self)
end

ffi.metatype("struct ffipar_thread", {
  __index = thread,
  __tostring = function(t)
    if t == nil then return "ffipar.thread: NULL" end
    return ("ffipar.thread %d (%s)"):format(C.ffipar_thread_id(t), thread.status(t))
  end,
})

M._methods = { thread = thread }

--- f:join(0) for ffipar.uv, which closes f's descriptor (t:close_fd()) as
-- soon as its poll handle is closed: the same results, without resetting
-- the descriptor (no lock, no system call). Not for users: a descriptor
-- left readable would wake their loop again.
function M.take(f)
  if not istype(thread_p, f) or f == nil then bad_self("ffipar.thread.take", f) end
  if C.ffipar_thread_take(f) ~= 0 then return nil, "timeout" end
  return outcome(f)
end

-- Threads and pool futures cross by reference: join, status and cancel
-- work from any thread that holds a handle (a detached one stays detached).
codec.register_ctype(thread_p, "thread")
function M.to_wire(t) return t, detached[t] and { d = true } or nil end
function M.from_wire(obj, params)
  local t = lib.adopt(obj, "ffipar_thread *")
  if params and params.d then detached[t] = true end
  return t
end

--- Run fn(...) on a new worker thread with its own LuaJIT state.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then
    lib.argerror("ffipar.spawn", "argument #1 must be a function, got " .. type(fn))
  end
  M.cache_modules()
  local check = require "ffipar.check"
  local me, msg = check.task_strand("spawned function", "par.spawn", 2), nil  -- a strand inside par.phase
  local streams                 -- big table arguments, sent while the worker decodes
  if me then
    msg = codec.encode("ffipar.spawn", "argument", -1, 2, check.task_runner, me, fn, ...)
  else
    local n, args = select("#", ...), nil
    for i = 1, n do
      local x = select(i, ...)
      if type(x) == "table" then
        local share = require "ffipar.share"
        local h, size = share.stream_for(x)
        if h then
          args = args or { ... }
          args[i] = h
          streams = streams or {}
          streams[#streams + 1] = { h, x, size, i + 1 }
        end
      end
    end
    if args then
      msg = codec.encode("ffipar.spawn", "argument", 1, 2, fn, unpack(args, 1, n))
    else
      msg = codec.encode("ffipar.spawn", "argument", 1, 2, fn, ...)
    end
  end
  local rc = C.ffipar_thread_new(out, msg, package.path, package.cpath)
  if rc ~= 0 then
    for i = 1, streams and #streams or 0 do require("ffipar.share").abandon(streams[i][1]) end
    error("ffipar.spawn: " .. select(2, lib.fail(rc)), 2)
  end
  local t = lib.own(out[0])
  if streams then
    local share, err = require "ffipar.share", nil
    for i = 1, #streams do
      local s = streams[i]
      if err then share.abandon(s[1]) else err = share.send(s[1], s[2], s[3], "ffipar.spawn", "argument", s[4]) end
    end
    if err then error(err, 2) end
  end
  return t
end

--- How many CPUs this process may use.
function M.cpus()
  return C.ffipar_cpus()
end

--- True in a worker whose thread was asked to cancel.
function M.cancelled()
  return C.ffipar_self_cancelled() ~= 0
end

--- This thread's id: 0 for the main thread, 1, 2, ... for workers.
function M.id()
  return C.ffipar_self_id()
end

--- Sleep (seconds); returns nil, "cancelled" early when this worker is cancelled.
function M.sleep(seconds)
  if type(seconds) ~= "number" or seconds < 0 or seconds ~= seconds then
    lib.argerror("ffipar.sleep", "seconds must be a number >= 0, got " .. tostring(seconds))
  end
  local rc = C.ffipar_sleep(seconds)
  if rc ~= 0 then return lib.fail(rc) end
  return true
end

--- Seconds on a monotonic clock.
function M.now()
  return C.ffipar_now()
end

return M
