-- ffipar.codec: what crosses between Lua states. Plain values go through
-- LuaJIT's string.buffer; ffipar handles cross by reference (the message
-- holds a reference to each object until it is freed); Lua functions cross
-- as bytecode with their upvalues; loaded modules, their functions, ffi.C and
-- named ctypes are looked up again by name on the other side. Anything else
-- is refused with an error naming where it was found.
local ffi = require "ffi"
local buffer = require "string.buffer"
local lib = require "ffipar.lib"
local C = lib.C

local M = {}

local TAG = "\0ffipar"
local buf = buffer.new()
local dbuf = buffer.new()

-- Handles known by ctype (metatyped C objects, array views) and by identity
-- (par.new pointers). Each maps to the module that can rebuild it.
local by_ctid = {}
local by_value = setmetatable({}, { __mode = "k" })

-- `mod.to_wire(h)` returns the object pointer and plain parameters;
-- `mod.from_wire(obj, params)` rebuilds a handle in the receiving state.
function M.register_ctype(ct, modname)
  by_ctid[tonumber(ct)] = modname
end

function M.register_value(h, modname, obj, params)
  by_value[h] = { modname, obj, params }
end

local function handle_info(v)
  local known = by_value[v]
  if known then return known[1], known[2], known[3] end
  local modname = by_ctid[tonumber(ffi.typeof(v))]
  if modname then
    local obj, params = require("ffipar." .. modname).to_wire(v)
    return modname, obj, params
  end
end

-- Loaded modules and their members, by value: rebuilt when package.loaded
-- has grown since the last look.
local modmap, modcount = {}, -1
local function lookup_module(v)
  local n = 0
  for _ in pairs(package.loaded) do n = n + 1 end
  if n ~= modcount then
    modmap, modcount = {}, n
    for name, mod in pairs(package.loaded) do
      if type(name) == "string" and (type(mod) == "table" or type(mod) == "function") then
        if modmap[mod] == nil or #name < #modmap[mod].n then
          modmap[mod] = { [TAG] = "m", n = name }
        end
        if type(mod) == "table" and name ~= "_G" then
          for k, f in pairs(mod) do
            if type(k) == "string" and type(f) == "function" and not modmap[f] then
              modmap[f] = { [TAG] = "mf", n = name, k = k }
            end
          end
        end
      end
    end
    for k, f in pairs(_G) do        -- globals such as print, pairs, tostring
      if type(k) == "string" and type(f) == "function" and not modmap[f] then
        modmap[f] = { [TAG] = "mf", n = "_G", k = k }
      end
    end
  end
  return modmap[v]
end

local function ctype_name(ct)
  local name = tostring(ct):match("^ctype<(.*)>$")
  if name and not name:match("^struct %d+$") and not name:match("^union %d+$") then
    local ok, again = pcall(ffi.typeof, name)
    if ok and again == ct then return name end
  end
end

local dumps = setmetatable({}, { __mode = "k" })

local conv

local function conv_function(f, ctx, where)
  local known = lookup_module(f)
  if known then return known end
  local id = ctx.fnid[f]
  if id then return { [TAG] = "f", i = id } end
  if debug.getinfo(f, "S").what == "C" then
    error(where .. " is a C function that belongs to no loaded module", 0)
  end
  id = #ctx.fns + 1
  ctx.fnid[f] = id
  local entry = { c = dumps[f] }
  if not entry.c then
    entry.c = string.dump(f)
    dumps[f] = entry.c
  end
  ctx.fns[id] = entry
  local ups, i = {}, 1
  while true do
    local name, val = debug.getupvalue(f, i)
    if name == nil then break end
    ups[i] = conv(val, ctx, ("upvalue '%s' of %s"):format(name, where))
    i = i + 1
  end
  entry.n, entry.u = i - 1, ups
  return { [TAG] = "f", i = id }
end

local function conv_table(t, ctx, where)
  local known = lookup_module(t)
  if known then return known end
  if ctx.seen[t] then error(where .. " is a table that contains itself", 0) end
  ctx.seen[t] = true
  local out
  for k, v in pairs(t) do
    local kw = type(k) == "string" and ("%s[%q]"):format(where, k) or ("%s[%s]"):format(where, tostring(k))
    local ck, cv = conv(k, ctx, kw), conv(v, ctx, kw)
    if out == nil and (ck ~= k or cv ~= v) then
      out = {}
      for k2, v2 in pairs(t) do
        if k2 == k then break end
        out[k2] = v2
      end
    end
    if out then out[ck] = cv end
  end
  ctx.seen[t] = nil
  return out or t
end

function conv(v, ctx, where)
  local tv = type(v)
  if tv == "nil" or tv == "boolean" or tv == "number" or tv == "string" then
    return v
  elseif tv == "table" then
    return conv_table(v, ctx, where)
  elseif tv == "function" then
    ctx.marked = true
    return conv_function(v, ctx, where)
  elseif tv == "cdata" then
    local modname, obj, params = handle_info(v)
    if modname then
      ctx.marked = true
      local objs = ctx.objs
      objs[#objs + 1] = obj
      return { [TAG] = "h", m = modname, i = #objs - 1, p = params }
    end
    if ffi.istype("int64_t", v) or ffi.istype("uint64_t", v) or ffi.istype("complex", v) then
      return v
    end
    if v == ffi.C then ctx.marked = true; return { [TAG] = "C" } end
    if tostring(v):match("^ctype<") then
      local name = ctype_name(v)
      if name then ctx.marked = true; return { [TAG] = "ct", n = name } end
      error(where .. " is an anonymous ctype; declare it with par.cdef and pass its name", 0)
    end
    error(where .. " is ordinary cdata (" .. tostring(ffi.typeof(v)) .. "), which cannot cross "
      .. "between threads; use par.array or par.new for shared memory", 0)
  elseif tv == "userdata" and v == ffi.C then
    ctx.marked = true
    return { [TAG] = "C" }
  end
  if tv == "userdata" or tv == "thread" then
    local known = tv == "userdata" and lookup_module(v)
    if known then return known end
  end
  error(where .. " is a " .. (tv == "thread" and "coroutine" or tv) .. ", which cannot cross between threads", 0)
end

local objs_t = ffi.typeof("void *[?]")

-- Encode values (select('#', ...) of them) into a new C message. `label`
-- names them in errors ("argument", "result"); numbering starts at `first`.
-- Errors are raised at `level` above the caller, prefixed with `fname`.
function M.encode(fname, label, first, level, ...)
  local n = select("#", ...)
  local ctx = { objs = {}, fns = {}, fnid = {}, seen = {} }
  local v = {}
  for i = 1, n do
    local x = select(i, ...)
    local ok, r = pcall(conv, x, ctx, ("%s #%d"):format(label, first + i - 1))
    if not ok then error(fname .. ": " .. tostring(r), level + 1) end
    v[i] = r
  end
  local w = { n = n, v = v }
  if ctx.marked then w.m = true; w.f = ctx.fns end
  buf:reset()
  buf:encode(w)
  local p, len = buf:ref()
  local nobjs = #ctx.objs
  local objs = nobjs > 0 and objs_t(nobjs, ctx.objs) or nil
  local msg = C.ffipar_msg_new(p, len, objs, nobjs)
  buf:reset()
  if msg == nil then error(fname .. ": out of memory", level + 1) end
  return msg
end

local unmark

local function unmark_table(t, d)
  if t[TAG] ~= nil then
    local kind = t[TAG]
    if kind == "h" then
      local obj = C.ffipar_msg_obj(d.msg, t.i)
      return require("ffipar." .. t.m).from_wire(obj, t.p)
    elseif kind == "f" then
      return d.fns[t.i]
    elseif kind == "m" then
      return require(t.n)
    elseif kind == "mf" then
      return t.n == "_G" and _G[t.k] or require(t.n)[t.k]
    elseif kind == "C" then
      return ffi.C
    elseif kind == "ct" then
      return ffi.typeof(t.n)
    end
  end
  local fix = {}
  for k, v in pairs(t) do
    local ck, cv = k, v
    if type(k) == "table" then ck = unmark(k, d) end
    if type(v) == "table" then cv = unmark(v, d) end
    if ck ~= k or cv ~= v then fix[#fix + 1] = { k, ck, cv } end
  end
  for i = 1, #fix do
    local f = fix[i]
    if f[1] ~= f[2] then t[f[1]] = nil end
    t[f[2]] = f[3]
  end
  return t
end

function unmark(v, d)
  if type(v) == "table" then return unmark_table(v, d) end
  return v
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

-- Decode a message into a packed table { n = count, ... }. `cache`, when
-- given, maps bytecode to an already loaded function (a pool worker loads a
-- task's function once). The message is not freed.
function M.decode(msg, cache)
  M.sync_cdefs()
  local p = C.ffipar_msg_data(msg, lib.lenp)
  dbuf:set(p, lib.lenp[0])
  local w = dbuf:decode()
  dbuf:reset()
  local v = w.v
  v.n = w.n
  if not w.m then return v end
  local d = { msg = msg, fns = {} }
  local used = {}
  for i, e in ipairs(w.f) do
    local f = cache and not used[e.c] and cache[e.c]
    if not f then
      f = assert(loadstring(e.c))
      if cache and not used[e.c] then cache[e.c] = f end
    end
    used[e.c] = true
    d.fns[i] = f
  end
  for i, e in ipairs(w.f) do
    for j = 1, e.n do
      debug.setupvalue(d.fns[i], j, unmark(e.u[j], d))
    end
  end
  for i = 1, w.n do
    v[i] = unmark(v[i], d)
  end
  return v
end

return M
