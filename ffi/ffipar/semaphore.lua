-- ffipar.semaphore: par.semaphore(n), a counting semaphore shared by
-- reference with workers.
--
--   local s = par.semaphore(2)      -- at most two inside at once
--   assert(s:acquire()); ...; s:release()
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("semaphore")

local M = {}

local addr = lib.addr

local MAX = 2^31 - 1
local istype = ffi.istype
local semaphore_p = ffi.typeof("struct ffipar_semaphore *")

local function check(s, fname)
  if not istype(semaphore_p, s) or s == nil then
    lib.argerror(fname, "expected a par.semaphore as self (use s:method()), got " .. lib.show(s), 3)
  end
end

local semaphore = {}

--- Take one unit, waiting up to `timeout` seconds for one.
-- true | nil, "timeout" | nil, "cancelled".
function semaphore:acquire(timeout)
  check(self, "s:acquire")
  local rc = C.ffipar_semaphore_acquire(self, lib.timeout(timeout, "s:acquire"))
  if rc == 0 then return true end
  return lib.fail(rc)
end

--- Give back k units (default 1), waking up to k waiters.
function semaphore:release(k)
  check(self, "s:release")
  if type(k) == "nil" then k = 1 else lib.count(k, "s:release", "count", 1, MAX) end
  if C.ffipar_semaphore_release(self, k) ~= 0 then
    lib.argerror("s:release", ("the count would exceed %d (it is %d)")
      :format(MAX, tonumber(C.ffipar_semaphore_count(self))))
  end
end

--- The count now (a snapshot).
function semaphore:count()
  check(self, "s:count")
  return tonumber(C.ffipar_semaphore_count(self))
end

ffi.metatype("struct ffipar_semaphore", {
  __index = semaphore,
  __tostring = function(s)
    if s == nil then return "ffipar.semaphore: NULL" end
    return ("ffipar.semaphore(%d): %s"):format(tonumber(C.ffipar_semaphore_count(s)),
      addr(s))
  end,
})
codec.register_ctype(semaphore_p, "semaphore")

local out = ffi.new("ffipar_semaphore *[1]")

--- A semaphore with n units (0 <= n <= 2^31 - 1, default 0).
function M.semaphore(n)
  if type(n) == "nil" then n = 0 end
  lib.count(n, "ffipar.semaphore", "count", 0, MAX)
  local rc = C.ffipar_semaphore_new(out, n)
  if rc ~= 0 then error("ffipar.semaphore: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(out[0])
end

M._methods = { semaphore = semaphore }

function M.to_wire(s) return s end
function M.from_wire(obj) return lib.adopt(obj, "ffipar_semaphore *") end

return M
