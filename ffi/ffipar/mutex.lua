-- ffipar.mutex: par.mutex(), a lock that any worker can hold. It is not
-- recursive and it knows its holder, so unlocking a mutex this thread does
-- not hold, or locking one it already holds, is an error at the caller.
--
--   local m = par.mutex()
--   m:lock(); counter[0] = counter[0] + 1; m:unlock()
--   m:with(function() ... end)            -- unlocks even when fn raises
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("mutex")

local M = {}

local addr = lib.addr

local istype = ffi.istype
local mutex_p = ffi.typeof("struct ffipar_mutex *")
local EBUSY = C.FFIPAR_EBUSY

local function bad_self(fname, v)
  lib.bad_self(fname, "mutex", "m", v)
end

local function holder(m)
  local id = C.ffipar_mutex_owner(m)
  return id < 0 and "nobody" or lib.thread_name(id)
end

-- This task's key for the holder check, ffipar_self_id() + 1, read on
-- first use, so the C side need not look its thread-local up each time. A
-- spawned worker's state runs one task; a pool worker's state runs many,
-- each with an id of its own: ffipar.worker calls new_task() before each.
local me
local function self_key()
  me = C.ffipar_self_id() + 1
  return me
end
M.self_key = function() return me or self_key() end
M.new_task = function() me = nil end

local mutex = {}

--- Take the lock, waiting up to `timeout` seconds (nil: forever).
-- true | nil, "timeout" | nil, "cancelled".
function mutex:lock(timeout)
  if not istype(mutex_p, self) or self == nil then bad_self("m:lock", self) end
  local rc = C.ffipar_mutex_lock(self, me or self_key(), lib.timeout(timeout, "m:lock"))
  if rc == 0 then return true end
  if rc == EBUSY then
    lib.argerror("m:lock", "this thread (" .. lib.thread_name(C.ffipar_self_id())
      .. ") already holds the mutex; it is not recursive")
  end
  return lib.fail(rc)
end

--- Take the lock if it is free: true, or false when any thread holds it.
function mutex:trylock()
  if not istype(mutex_p, self) or self == nil then bad_self("m:trylock", self) end
  return C.ffipar_mutex_trylock(self, me or self_key()) == 1
end

--- Release the lock, which this thread must hold.
function mutex:unlock()
  if not istype(mutex_p, self) or self == nil then bad_self("m:unlock", self) end
  if C.ffipar_mutex_unlock(self, me or self_key()) ~= 0 then
    lib.argerror("m:unlock", ("the mutex is not locked by this thread (%s); held by %s")
      :format(lib.thread_name(C.ffipar_self_id()), holder(self)))
  end
end

local function with_end(m, ok, ...)
  local rc = C.ffipar_mutex_unlock(m, me or self_key())
  if not ok then error((...), 0) end
  if rc ~= 0 then error("m:with: the function released the mutex itself", 0) end
  return ...
end

--- Run fn(...) holding the lock; unlock when it returns or raises (the
-- error is then re-raised). Returns fn's results, or nil, "cancelled".
function mutex:with(fn, ...)
  if not istype(mutex_p, self) or self == nil then bad_self("m:with", self) end
  if type(fn) ~= "function" then
    lib.argerror("m:with", "argument #1 must be a function, got " .. type(fn))
  end
  local rc = C.ffipar_mutex_lock(self, me or self_key(), -1)
  if rc == EBUSY then
    lib.argerror("m:with", "this thread already holds the mutex; it is not recursive")
  elseif rc ~= 0 then
    return lib.fail(rc)
  end
  return with_end(self, pcall(fn, ...))
end

ffi.metatype("struct ffipar_mutex", {
  __index = mutex,
  __tostring = function(m)
    if m == nil then return "ffipar.mutex: NULL" end
    return ("ffipar.mutex: %s (held by %s)"):format(addr(m), holder(m))
  end,
})
codec.register_ctype(mutex_p, "mutex")

local out = ffi.new("ffipar_mutex *[1]")

--- A new mutex, shared by reference with every worker it is passed to.
function M.mutex()
  local rc = C.ffipar_mutex_new(out)
  if rc ~= 0 then error("ffipar.mutex: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(out[0])
end

M.is = function(v) return istype(mutex_p, v) and v ~= nil end

M._methods = { mutex = mutex }

function M.to_wire(m) return m end
function M.from_wire(obj) return lib.adopt(obj, "ffipar_mutex *") end

return M
