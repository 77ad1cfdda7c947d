-- ffipar.cond: par.cond(), a condition variable used with a par.mutex.
-- Wakes may be spurious, as with pthreads: wait in a loop on your condition.
--
--   m:lock()
--   while queue_empty() do cv:wait(m) end
--   ... ; m:unlock()
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local mutex = require "ffipar.mutex"
local C = lib.C
lib.declare("cond")

local M = {}

local addr = lib.addr

local istype = ffi.istype
local cond_p = ffi.typeof("struct ffipar_cond *")
local EPERM = C.FFIPAR_EPERM

local function bad_self(fname, v)
  lib.bad_self(fname, "cond", "cv", v)
end

local cond = {}

--- Release m, wait for a signal (up to `timeout` seconds), take m again.
-- true | nil, "timeout" | nil, "cancelled"; m is held again in every case.
function cond:wait(m, timeout)
  if not istype(cond_p, self) or self == nil then bad_self("cv:wait", self) end
  if not mutex.is(m) then
    lib.argerror("cv:wait", "argument #1 must be a par.mutex, got " .. tostring(m))
  end
  local rc = C.ffipar_cond_wait(self, m, mutex.self_key(), lib.timeout(timeout, "cv:wait"))
  if rc == 0 then return true end
  if rc == EPERM then
    lib.argerror("cv:wait", "the mutex is not locked by this thread ("
      .. lib.thread_name(C.ffipar_self_id()) .. ")")
  end
  return lib.fail(rc)
end

--- Wake one waiting thread (if any).
function cond:signal()
  if not istype(cond_p, self) or self == nil then bad_self("cv:signal", self) end
  C.ffipar_cond_signal(self)
end

--- Wake every waiting thread.
function cond:broadcast()
  if not istype(cond_p, self) or self == nil then bad_self("cv:broadcast", self) end
  C.ffipar_cond_broadcast(self)
end

ffi.metatype("struct ffipar_cond", {
  __index = cond,
  __tostring = function(c) return "ffipar.cond: " .. addr(c) end,
})
codec.register_ctype(cond_p, "cond")

local out = ffi.new("ffipar_cond *[1]")

--- A new condition variable, shared by reference with workers.
function M.cond()
  local rc = C.ffipar_cond_new(out)
  if rc ~= 0 then error("ffipar.cond: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(out[0])
end

M._methods = { cond = cond }

function M.to_wire(c) return c end
function M.from_wire(obj) return lib.adopt(obj, "ffipar_cond *") end

return M
