-- ffipar.atomic: par.atomic(init), a shared int64_t object, and
-- par.atomics, the same operations on int32_t*, int64_t* and double*
-- pointers into shared memory. Everything is sequentially consistent.
--
--   local hits = par.atomic(0)
--   hits:add(1)                          -- returns the old value
--   par.atomics.add(scores:ptr() + i, 0.5)
--
-- Values come back as plain Lua numbers (doubles), so hot loops do not
-- allocate; beyond 2^53 they lose precision (n:load64() is exact).
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("atomic")

local M = {}

local addr = lib.addr

local istype = ffi.istype
local atomic_p = ffi.typeof("struct ffipar_atomic *")
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local LIM64 = 2^63

-- The slow path of an integer argument: an int64/uint64 cdata is fine,
-- anything else that is not an integer in int64 range is refused.
-- A uint64_t above INT64_MAX is refused: it would become a negative value.
local INT64_MAX = 0x7FFFFFFFFFFFFFFFULL
local function int64_cdata(v)
  return type(v) == "cdata" and (istype(int64_t, v) or (istype(uint64_t, v) and v <= INT64_MAX))
end

local function int_arg(v, fname, i)
  if int64_cdata(v) then return v end
  if type(v) == "number" and v % 1 == 0 and v >= -LIM64 and v < LIM64 then return v end
  lib.argerror(fname, ("argument #%d must be an integer%s, got %s"):format(i,
    type(v) == "cdata" and " in int64_t range" or "", lib.show(v)), 3)
end

local function bad_self(fname, v)
  lib.bad_self(fname, "atomic", "n", v)
end

-- The checks below are written out in each method (not behind a shared
-- helper taking varargs) so that the JIT compiles them to a few guards.
local atomic = {}

--- The value.
function atomic:load()
  if not istype(atomic_p, self) or self == nil then bad_self("n:load", self) end
  return C.ffipar_atomic_load(self)
end

--- The exact value as an int64_t cdata (for values beyond 2^53).
function atomic:load64()
  if not istype(atomic_p, self) or self == nil then bad_self("n:load64", self) end
  return C.ffipar_atomic_load64(self)
end

--- Set the value.
function atomic:store(v)
  if not istype(atomic_p, self) or self == nil then bad_self("n:store", self) end
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM64 or v < -LIM64 then v = int_arg(v, "n:store", 1) end
  C.ffipar_atomic_store(self, v)
end

--- Add v; returns the value before.
function atomic:add(v)
  if not istype(atomic_p, self) or self == nil then bad_self("n:add", self) end
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM64 or v < -LIM64 then v = int_arg(v, "n:add", 1) end
  return C.ffipar_atomic_add(self, v)
end

--- Subtract v; returns the value before.
function atomic:sub(v)
  if not istype(atomic_p, self) or self == nil then bad_self("n:sub", self) end
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM64 or v < -LIM64 then v = int_arg(v, "n:sub", 1) end
  return C.ffipar_atomic_sub(self, v)
end

--- Set v; returns the value before.
function atomic:exchange(v)
  if not istype(atomic_p, self) or self == nil then bad_self("n:exchange", self) end
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM64 or v < -LIM64 then v = int_arg(v, "n:exchange", 1) end
  return C.ffipar_atomic_exchange(self, v)
end

--- Set new if the value is expected: true if it was set.
function atomic:cas(expected, new)
  if not istype(atomic_p, self) or self == nil then bad_self("n:cas", self) end
  if type(expected) ~= "number" or expected % 1 ~= 0 or expected >= LIM64 or expected < -LIM64 then
    expected = int_arg(expected, "n:cas", 1)
  end
  if type(new) ~= "number" or new % 1 ~= 0 or new >= LIM64 or new < -LIM64 then
    new = int_arg(new, "n:cas", 2)
  end
  return C.ffipar_atomic_cas(self, expected, new) ~= 0
end

ffi.metatype("struct ffipar_atomic", {
  __index = atomic,
  __tostring = function(a)
    if a == nil then return "ffipar.atomic: NULL" end
    return ("ffipar.atomic(%s): %s"):format(tostring(C.ffipar_atomic_load64(a)):gsub("LL$", ""),
      addr(a))
  end,
})
codec.register_ctype(atomic_p, "atomic")

local out = ffi.new("ffipar_atomic *[1]")

--- A shared int64_t holding init (default 0).
function M.atomic(init)
  if type(init) == "nil" then init = 0 end
  if type(init) ~= "number" or init % 1 ~= 0 or init >= LIM64 or init < -LIM64 then
    if not int64_cdata(init) then
      lib.argerror("ffipar.atomic", "initial value must be an integer"
        .. (type(init) == "cdata" and " in int64_t range" or "") .. ", got " .. lib.show(init))
    end
  end
  local rc = C.ffipar_atomic_new(out, init)
  if rc ~= 0 then error("ffipar.atomic: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(out[0])
end

M._methods = { atomic = atomic }

function M.to_wire(a) return a end
function M.from_wire(obj) return lib.adopt(obj, "ffipar_atomic *") end

---- par.atomics: on pointers into shared memory ----

local i32p = ffi.typeof("int32_t *")
local i64p = ffi.typeof("int64_t *")
local f64p = ffi.typeof("double *")
local LIM32 = 2^31

local function bad_ptr(fname, p)
  local what = type(p) == "cdata" and tostring(ffi.typeof(p)) or type(p)
  if type(p) == "cdata" and p == nil then what = "a NULL " .. what end
  if type(p) == "cdata" and pcall(function() return p.ptr end) then
    what = what .. " (a par.array: pass a:ptr() + i)"
  end
  lib.argerror(fname, "argument #1 must be an int32_t*, int64_t* or double* into shared memory "
    .. "(e.g. a:ptr() + i), got " .. what, 3)
end

-- Called from i32_arg & co., called from the function the user called.
local function bad_value(fname, i, v, what)
  lib.argerror(fname, ("argument #%d must be %s, got %s"):format(i, what, lib.show(v)), 4)
end

-- Value checks per cell type; `i` is the argument number for messages.
local function i32_arg(v, fname, i)
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM32 or v < -LIM32 then
    bad_value(fname, i, v, "an integer in int32_t range")
  end
  return v
end

local function i64_arg(v, fname, i)
  if type(v) ~= "number" or v % 1 ~= 0 or v >= LIM64 or v < -LIM64 then
    if int64_cdata(v) then return v end
    bad_value(fname, i, v, type(v) == "cdata" and "an integer in int64_t range" or "an integer")
  end
  return v
end

local function f64_arg(v, fname, i)
  if type(v) ~= "number" then bad_value(fname, i, v, "a number") end
  return v
end

-- Dispatch on the exact pointer ctype (ffi.istype would also accept
-- uint32_t* as int32_t*); ffi.typeof of a cdata and the comparison compile.
local typeof = ffi.typeof
local atomics = {}

--- The value of *p.
function atomics.load(p)
  if type(p) == "cdata" and p ~= nil then
    local t = typeof(p)
    if t == f64p then return C.ffipar_atomics_load_f64(p) end
    if t == i64p then return C.ffipar_atomics_load_i64(p) end
    if t == i32p then return C.ffipar_atomics_load_i32(p) end
  end
  bad_ptr("ffipar.atomics.load", p)
end

--- *p = v.
function atomics.store(p, v)
  local f = "ffipar.atomics.store"
  if type(p) == "cdata" and p ~= nil then
    local t = typeof(p)
    if t == f64p then return C.ffipar_atomics_store_f64(p, f64_arg(v, f, 2)) end
    if t == i64p then return C.ffipar_atomics_store_i64(p, i64_arg(v, f, 2)) end
    if t == i32p then return C.ffipar_atomics_store_i32(p, i32_arg(v, f, 2)) end
  end
  bad_ptr(f, p)
end

--- *p += v; returns the value before (a double add is a CAS loop).
function atomics.add(p, v)
  local f = "ffipar.atomics.add"
  if type(p) == "cdata" and p ~= nil then
    local t = typeof(p)
    if t == f64p then return C.ffipar_atomics_add_f64(p, f64_arg(v, f, 2)) end
    if t == i64p then return C.ffipar_atomics_add_i64(p, i64_arg(v, f, 2)) end
    if t == i32p then return C.ffipar_atomics_add_i32(p, i32_arg(v, f, 2)) end
  end
  bad_ptr(f, p)
end

--- *p = v; returns the value before.
function atomics.exchange(p, v)
  local f = "ffipar.atomics.exchange"
  if type(p) == "cdata" and p ~= nil then
    local t = typeof(p)
    if t == f64p then return C.ffipar_atomics_exchange_f64(p, f64_arg(v, f, 2)) end
    if t == i64p then return C.ffipar_atomics_exchange_i64(p, i64_arg(v, f, 2)) end
    if t == i32p then return C.ffipar_atomics_exchange_i32(p, i32_arg(v, f, 2)) end
  end
  bad_ptr(f, p)
end

--- If *p == expected then *p = new: true if it was set. Doubles compare
-- bit patterns (0.0 and -0.0 differ).
function atomics.cas(p, expected, new)
  local f = "ffipar.atomics.cas"
  if type(p) == "cdata" and p ~= nil then
    local t = typeof(p)
    if t == f64p then
      return C.ffipar_atomics_cas_f64(p, f64_arg(expected, f, 2), f64_arg(new, f, 3)) ~= 0
    end
    if t == i64p then
      return C.ffipar_atomics_cas_i64(p, i64_arg(expected, f, 2), i64_arg(new, f, 3)) ~= 0
    end
    if t == i32p then
      return C.ffipar_atomics_cas_i32(p, i32_arg(expected, f, 2), i32_arg(new, f, 3)) ~= 0
    end
  end
  bad_ptr(f, p)
end

M.atomics = atomics

return M
