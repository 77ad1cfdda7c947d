-- ffipar.lib: loads the C shim once per Lua state, declares its API section
-- by section, and holds the helpers every module shares: the error
-- convention (misuse raises at the caller; expected outcomes return
-- nil, "timeout" / "closed" / "cancelled") and argument checks.
local ffi = require "ffi"
local cdef = require "ffipar.cdef"

local M = {}

local declared = {}
-- Declare one section of csrc/ffipar.h in this state (once).
function M.declare(section)
  if not declared[section] then
    for _, dep in ipairs(cdef._needs[section] or {}) do M.declare(dep) end
    ffi.cdef((assert(cdef[section], section)))
    declared[section] = true
  end
end
M.declare("core")

local function dir_of_this_file()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)ffipar/lib%.lua$")
end

local function load_shim()
  local tried = {}
  local candidates = {
    package.loaded["ffipar.libpath"],           -- a worker loads its parent's file
    os.getenv("FFIPAR_LIB"),
    dir_of_this_file() and dir_of_this_file() .. "libffipar.so",
    package.searchpath("libffipar", package.cpath),
  }
  for i = 1, 4 do
    local path = candidates[i]
    if path and path ~= "" then
      local f = io.open(path, "rb")
      if f then
        f:close()
        local ok, lib = pcall(ffi.load, path)
        if ok then return lib end
        tried[#tried + 1] = path .. " (" .. tostring(lib) .. ")"
      else
        tried[#tried + 1] = path
      end
    end
  end
  error("ffipar: cannot find libffipar.so (run make, or set FFIPAR_LIB, or "
    .. "put it on package.cpath); tried: " .. table.concat(tried, ", "), 3)
end

M.C = load_shim()
local C = M.C

local lenp = ffi.new("size_t[1]")
M.lenp = lenp

-- Map a shim return code to the Lua convention.
function M.fail(rc)
  if rc == C.FFIPAR_ETIMEOUT then return nil, "timeout" end
  if rc == C.FFIPAR_ECLOSED then return nil, "closed" end
  if rc == C.FFIPAR_ECANCELLED then return nil, "cancelled" end
  return nil, ffi.string(C.ffipar_strerror(rc))
end

-- Raise a misuse error at the caller of the public function.
function M.argerror(fname, msg, level)
  error(fname .. ": " .. msg, (level or 2) + 1)
end

-- Seconds for the shim: nil waits forever (-1), otherwise a number >= 0.
function M.timeout(t, fname, level)
  if type(t) == "nil" then return -1 end      -- not t == nil: a NULL cdata is not nil
  if type(t) ~= "number" or t < 0 or t ~= t then
    M.argerror(fname, "timeout must be a number >= 0 or nil, got " .. M.show(t), (level or 2) + 1)
  end
  return t
end

-- An integer count in [lo, hi].
function M.count(n, fname, what, lo, hi, level)
  if type(n) ~= "number" or n ~= math.floor(n) or n < lo or n > (hi or 2^53) then
    M.argerror(fname, ("%s must be an integer >= %d%s, got %s"):format(what, lo,
      hi and (" and <= " .. hi) or "", tostring(n)), (level or 2) + 1)
  end
  return n
end

-- After a pcall: run cleanup(), then rethrow the error or return the results.
function M.finish(cleanup, ok, ...)
  cleanup()
  if not ok then error((...), 0) end
  return ...
end

-- A pointer as 0x... for __tostring.
function M.addr(p)
  return ("0x%x"):format(tonumber(ffi.cast("uintptr_t", p)))
end

-- The error for a method called on something else (usually obj.method()
-- instead of obj:method()): "expected a par.mutex as self (use m:method())".
-- Called from a module's own bad_self, called from the method: level 4.
function M.bad_self(fname, what, var, v)
  M.argerror(fname, ("expected a par.%s as self (use %s:method()), got %s"):format(what, var, M.show(v)), 4)
end

-- A value for a message: a NULL pointer shows its type (a handle's
-- __tostring would read through it).
function M.show(v)
  if type(v) == "cdata" and v == nil then
    return "NULL " .. tostring(ffi.typeof(v)):gsub("^ctype<(.*)>$", "%1")
  end
  return tostring(v)
end

-- Raise for a readiness descriptor that could not be made (errno of the
-- last C call: an eventfd beyond the process's limit is the likely one).
function M.fd_error(fname)
  local e = ffi.errno()
  M.argerror(fname, ("cannot make an eventfd (errno %d%s)"):format(e,
    e == 24 and ": too many open files; see ulimit -n" or ""), 3)
end

-- A name for a thread id in messages.
function M.thread_name(id)
  return id == 0 and "the main thread" or ("worker " .. id)
end

-- Wrap a new C object (one reference, already owned) as a collected handle.
function M.own(ptr)
  return ffi.gc(ptr, C.ffipar_obj_release)
end

-- Wrap an object received from another state: take a reference of our own.
function M.adopt(ptr, ctype)
  C.ffipar_obj_retain(ptr)
  return ffi.gc(ffi.cast(ctype, ptr), C.ffipar_obj_release)
end

return M
