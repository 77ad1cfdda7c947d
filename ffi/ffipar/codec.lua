-- ffipar.codec: the FFI half of the wire format (see ffipar.wire). ffipar
-- handles cross by reference: a C message (ffipar_msg) carries the bytes
-- plus one reference to each shared object they name, until it is freed.
-- Also 64-bit integers, ffi.C and named ctypes; any other cdata is refused.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local wire = require "ffipar.wire"
local C = lib.C

local M = {}
local TAG = wire.TAG

-- Handles known by ctype (metatyped C objects, array views) and by identity
-- (par.new pointers). Each maps to the module that can rebuild it:
-- `mod.to_wire(h)` returns the object pointer and plain parameters;
-- `mod.from_wire(obj, params)` rebuilds a handle in the receiving state.
local by_ctid = {}
local by_value = setmetatable({}, { __mode = "k" })

function M.register_ctype(ct, modname)
  by_ctid[tonumber(ct)] = modname
end

function M.register_value(h, modname, obj, params)
  by_value[h] = { modname, obj, params }
end

local function ctype_name(ct)
  local name = tostring(ct):match("^ctype<(.*)>$")
  if name and not name:match("^struct %d+$") and not name:match("^union %d+$") then
    local ok, again = pcall(ffi.typeof, name)
    if ok and again == ct then return name end
  end
end

-- wire calls this for every cdata value it meets.
function M.conv_cdata(v, ctx)
  local known = by_value[v]
  local modname, obj, params
  if known then
    modname, obj, params = known[1], known[2], known[3]
  else
    modname = by_ctid[tonumber(ffi.typeof(v))]
    if modname then obj, params = require("ffipar." .. modname).to_wire(v) end
  end
  if modname == "shm" or (modname == "channel" and params.ct) then
    local why = require("ffipar.shm").cannot_cross(params)
    if why then error(wire.where(ctx) .. " " .. why, 0) end
  end
  if modname then
    ctx.marked = true
    local objs = ctx.objs
    objs[#objs + 1] = obj
    return { [TAG] = "h", m = modname, i = #objs - 1, p = params }
  end
  if ffi.istype("int64_t", v) or ffi.istype("uint64_t", v) or ffi.istype("complex", v) then
    return v
  end
  if tostring(v):match("^ctype<") then
    local name = ctype_name(v)
    if name then ctx.marked = true; return { [TAG] = "ct", n = name } end
    error(wire.where(ctx) .. " is an anonymous ctype; declare it with par.cdef and pass its name", 0)
  end
  error(wire.where(ctx) .. " is ordinary cdata (" .. tostring(ffi.typeof(v)) .. "), which cannot cross "
    .. "between threads; use par.array or par.new for shared memory", 0)
end

-- wire calls this for the markers it does not know.
function M.unmark_cdata(t, d)
  M.sync_cdefs()
  local kind = t[TAG]
  if kind == "h" then
    return require("ffipar." .. t.m).from_wire(C.ffipar_msg_obj(d.msg, t.i), t.p)
  elseif kind == "C" then
    return ffi.C
  elseif kind == "ct" then
    return ffi.typeof(t.n)
  end
  error("ffipar: unknown marker in message: " .. tostring(kind))
end

local objs_t = ffi.typeof("void *[?]")

-- A C message from an encoded buffer and its objects.
function M.message(buf, objs, fname, level)
  local p, len = buf:ref()
  local nobjs = #objs
  local msg = C.ffipar_msg_new(p, len, nobjs > 0 and objs_t(nobjs, objs) or nil, nobjs)
  buf:reset()
  if msg == nil then error(fname .. ": out of memory", level + 1) end
  return msg
end

-- Encode values (select('#', ...) of them) into a new C message. `label`
-- names them in errors ("argument", "result"); numbering starts at `first`.
function M.encode(fname, label, first, level, ...)
  local buf, objs = wire.encode(fname, label, first, level + 1, ...)
  return M.message(buf, objs, fname, level + 1)
end

local applied = 0
-- Replay the par.cdef declarations other states made since we last looked.
function M.sync_cdefs()
  local n = C.ffipar_cdef_count()
  if n > applied then
    require("ffipar.shm").replay(applied, n)
    applied = n
  end
end

-- Decode a message into { n = count, ... } (the message is not freed).
function M.decode(msg, cache)
  M.sync_cdefs()
  local p = C.ffipar_msg_data(msg, lib.lenp)
  return wire.decode(p, lib.lenp[0], msg, cache)
end

return M
