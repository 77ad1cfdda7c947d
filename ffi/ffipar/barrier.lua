-- ffipar.barrier: par.barrier(n), where n threads wait for each other,
-- round after round. In each round exactly one thread's wait returns true.
--
--   local b = par.barrier(3)
--   if b:wait() then print("round done") end
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("barrier")

local M = {}

local addr = lib.addr

local istype = ffi.istype
local barrier_p = ffi.typeof("struct ffipar_barrier *")

local function bad_self(fname, v)
  lib.bad_self(fname, "barrier", "b", v)
end

local barrier = {}

--- Wait until n threads have arrived (up to `timeout` seconds). true in one
-- thread of the round, false in the others | nil, "timeout" | nil,
-- "cancelled" (the caller then no longer counts in the round).
function barrier:wait(timeout)
  if not istype(barrier_p, self) or self == nil then bad_self("b:wait", self) end
  local rc = C.ffipar_barrier_wait(self, lib.timeout(timeout, "b:wait"))
  if rc >= 0 then return rc == 1 end
  return lib.fail(rc)
end

--- How many threads make a round.
function barrier:count()
  if not istype(barrier_p, self) or self == nil then bad_self("b:count", self) end
  return C.ffipar_barrier_count(self)
end

ffi.metatype("struct ffipar_barrier", {
  __index = barrier,
  __tostring = function(b)
    if b == nil then return "ffipar.barrier: NULL" end
    return ("ffipar.barrier(%d): %s"):format(C.ffipar_barrier_count(b), addr(b))
  end,
})
codec.register_ctype(barrier_p, "barrier")

local out = ffi.new("ffipar_barrier *[1]")

--- A barrier for n threads (1 <= n <= 65535), shared by reference.
function M.barrier(n)
  lib.count(n, "ffipar.barrier", "count", 1, 65535)
  local rc = C.ffipar_barrier_new(out, n)
  if rc ~= 0 then error("ffipar.barrier: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(out[0])
end

M._methods = { barrier = barrier }

function M.to_wire(b) return b end
function M.from_wire(obj) return lib.adopt(obj, "ffipar_barrier *") end

return M
