-- ffipar.share: par.share(t), a read-only snapshot of a Lua table that
-- crosses by reference and is decoded once per Lua state.
--
--   local records = par.share(t)         -- t encoded once, here, now
--   pool:best(records, score)             -- each worker decodes it on first use
--   par.spawn(function(r) local t = r:get() ... end, records)
--
-- The snapshot is t as it was when shared: later changes to t are never
-- seen through it (share again to publish them). Each state's copy is
-- shared by everything that runs in that state (a pool worker's tasks);
-- it is read-only by contract. A state drops its copy when it next decodes
-- a snapshot and finds that nothing else refers to the old one.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("share")

local M = {}

local istype = ffi.istype
local share_p = ffi.typeof("struct ffipar_share *")
local uintptr_t = ffi.typeof("uintptr_t")

local function bad_self(fname, v)
  lib.bad_self(fname, "share", "sh", v)
end

-- This state's view of each snapshot, by address: { ref = the cache's own
-- reference, h = the snapshot, t = the table, keys = its keys in the
-- sharing state's pairs order, vals = the values in that order }. In the
-- state that shared it, the entry holds the caller's own keys and values
-- and no reference: the handle par.share returned removes it when
-- collected (the address cannot be reused before).
local cache = {}

local function addr_of(h)
  return tonumber(ffi.cast(uintptr_t, h))
end

-- Forget the snapshots nothing else in the process refers to.
local function sweep()
  for a, e in pairs(cache) do
    if e.ref and C.ffipar_share_refs(e.h) == 1 then cache[a] = nil end
  end
end

-- This state's entry for h, decoding the snapshot on first use; `once`:
-- not kept (a snapshot made for one call).
local function entry(h, once)
  local a = addr_of(h)
  local e = cache[a]
  if e then return e end
  sweep()
  local r = codec.decode(C.ffipar_share_msg(h))
  C.ffipar_share_decoded(h)
  e = { h = h, t = r[1], keys = r[2] }
  if not once then
    -- The cache's reference, held as a void *: LuaJIT skips the finalizer
    -- of a metatyped pointer still alive when a worker's state closes.
    C.ffipar_obj_retain(h)
    e.ref = ffi.gc(ffi.cast("void *", h), C.ffipar_obj_release)
    e.h = ffi.cast(share_p, e.ref)
    cache[a] = e
  end
  return e
end

-- The keys and values in the sharing state's pairs order (the sharing
-- state's own objects there; this state's copies elsewhere).
function M.entries(h, once)
  local e = entry(h, once)
  if not e.vals then
    local t, keys, vals = e.t, e.keys, {}
    for i = 1, #keys do vals[i] = t[keys[i]] end
    e.vals = vals
  end
  return e.keys, e.vals
end

local share = {}

--- The snapshot as a table in this state (decoded once per state, then the
-- same table every time): read it, do not change it.
function share:get()
  if not istype(share_p, self) or self == nil then bad_self("sh:get", self) end
  local e = entry(self)
  if e.t == nil then             -- the sharing state keeps the entries, not the copy
    local r = codec.decode(C.ffipar_share_msg(self))
    C.ffipar_share_decoded(self)
    e.t = r[1]
  end
  return e.t
end

--- How many Lua states have decoded the snapshot so far (for tests and tuning).
function share:decodes()
  if not istype(share_p, self) or self == nil then bad_self("sh:decodes", self) end
  return tonumber(C.ffipar_share_decodes(self))
end

ffi.metatype("struct ffipar_share", {
  __index = share,
  __len = function(h)
    if h == nil then bad_self("#sh", h) end
    return tonumber(C.ffipar_share_len(h))
  end,
  __tostring = function(h)
    if h == nil then return "ffipar.share: NULL" end
    return ("ffipar.share(%d entries): %s"):format(tonumber(C.ffipar_share_len(h)), lib.addr(h))
  end,
})
codec.register_ctype(share_p, "share")

local out = ffi.new("ffipar_share *[1]")

-- A snapshot of t; errors are raised as fname's, `level` above (3: the
-- caller of the public function that called this).
function M.snapshot(t, fname, level)
  if type(t) ~= "table" then
    lib.argerror(fname, "argument #1 must be a table" .. (fname == "ffipar.share" and "" or
      " or a par.share snapshot") .. ", got " .. lib.show(t), level)
  end
  local keys, vals, n = {}, {}, 0
  for k, v in pairs(t) do
    local tk = type(k)
    if tk ~= "string" and tk ~= "number" and tk ~= "boolean" then
      lib.argerror(fname, ("argument #1 has a %s as a key; a snapshot's keys are strings, "
        .. "numbers or booleans"):format(tk), level)
    end
    n = n + 1
    keys[n], vals[n] = k, v
  end
  local msg = codec.encode(fname, "argument", 1, level, t, keys)
  local rc = C.ffipar_share_new(out, msg, n)
  if rc ~= 0 then error(fname .. ": " .. select(2, lib.fail(rc)), level) end
  local a = addr_of(out[0])
  sweep()
  cache[a] = { keys = keys, vals = vals }
  return ffi.gc(out[0], function(p)
    cache[a] = nil
    C.ffipar_obj_release(p)
  end)
end

-- Let go of a snapshot made for one call, now (not at the next GC).
function M.drop(h)
  cache[addr_of(h)] = nil
  C.ffipar_obj_release(ffi.gc(h, nil))
end

--- A snapshot of table t, shared by reference. Keys must be strings,
-- numbers or booleans; values anything that crosses into a worker.
function M.share(t)
  local h = M.snapshot(t, "ffipar.share", 3)    -- not a tail call: level 3 is our caller
  return h
end

--- True when v is a par.share snapshot.
function M.is_share(v)
  return istype(share_p, v) and v ~= nil
end

M._methods = { share = share }

function M.to_wire(h) return h end
function M.from_wire(obj) return lib.adopt(obj, "struct ffipar_share *") end

return M
