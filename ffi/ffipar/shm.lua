-- ffipar.shm: shared memory. par.array and par.new allocate in the shim, so
-- the memory has the same address in every state and lives until the last
-- handle in any state is collected; par.cdef declares types in every state.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local check = require "ffipar.check"
local C = lib.C
lib.declare("shm")

local M = {}

local applied = {}          -- declaration text -> true, in this state

-- The words of every par.cdef declaration, and the words a fresh state
-- knows: a type name made only of these can be resolved in every state.
local words = {}
for w in ([[struct union enum const volatile signed unsigned char short int long float double
  void bool _Bool complex _Complex int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t
  uint64_t intptr_t uintptr_t ptrdiff_t size_t ssize_t wchar_t va_list __int64
  __builtin_va_list]]):gmatch("[%w_]+") do words[w] = true end
local function learn(text)
  for w in text:gmatch("[%a_][%w_]*") do words[w] = true end
end

--- Declare C types in this state and in every worker (now and later).
function M.cdef(decl)
  if type(decl) ~= "string" then
    lib.argerror("ffipar.cdef", "declaration must be a string, got " .. type(decl))
  end
  codec.sync_cdefs()        -- others' declarations first: decl may use them
  if applied[decl] then return end
  local ok, err = pcall(ffi.cdef, decl)
  if not ok then lib.argerror("ffipar.cdef", tostring(err)) end
  applied[decl] = true
  learn(decl)
  local rc = C.ffipar_cdef_add(decl, #decl)
  if rc < 0 then error("ffipar.cdef: " .. select(2, lib.fail(rc)), 2) end
end

-- Apply declarations [from, to) made by other states (codec calls this).
function M.replay(from, to)
  for i = from, to - 1 do
    local p = C.ffipar_cdef_get(i, lib.lenp)
    local text = ffi.string(p, lib.lenp[0])
    if not applied[text] then
      applied[text] = true
      learn(text)
      pcall(ffi.cdef, text)   -- a clash with this state's own types shows up on use
    end
  end
end

-- The name a par.cdef declaration gives the ctype with this id, or nil.
local function cdef_name(id)
  for text in pairs(applied) do
    for name in text:gmatch("([%a_][%w_]*)%s*;") do
      local ok, t = pcall(ffi.typeof, name)
      if ok and tonumber(t) == id then return name end
    end
  end
end

-- A readable name for a ctype: ffi prints a typedef'd anonymous struct as
-- "struct 325" (its ctype id); give it the name a par.cdef declared for it
-- (that name also resolves in every worker). Other ctypes print as ffi does.
function M.ctype_name(ct)
  local s = tostring(ct):match("^ctype<(.*)>$") or tostring(ct)
  local id, rest = s:match("^struct (%d+)(.*)$")
  if not id then id, rest = s:match("^union (%d+)(.*)$") end
  if not id then return s end
  local name = cdef_name(tonumber(id))
  return name and (name .. rest) or s
end

-- An ffi error message with its anonymous struct numbers ("cannot convert
-- 'struct 224' to 'struct 221'") replaced by their par.cdef names, and
-- without the position of the ffipar line that raised it.
function M.readable(msg)
  msg = tostring(msg):gsub("^[^\n]-:%d+: ", "")
  return (msg:gsub("(%f[%w]struct (%d+))", function(s, id) return cdef_name(tonumber(id)) or s end)
    :gsub("(%f[%w]union (%d+))", function(s, id) return cdef_name(tonumber(id)) or s end))
end

-- The element pointer and length of a par.array; nil for anything else.
function M.array_span(a)
  if type(a) == "cdata" and M._is_array(a) then return a.p, a.n end
end

local shmp = ffi.new("ffipar_shm *[1]")
local MAX_BYTES = 2^46

-- Resolve a ctype argument to (ctype, name that every state can resolve).
local function resolve(ctype, fname)
  codec.sync_cdefs()        -- a par.cdef made since this worker started
  local name = ctype
  if type(ctype) == "cdata" then
    name = tostring(ctype):match("^ctype<(.*)>$") and M.ctype_name(ctype)
    if name and (name:match("^struct %d+$") or name:match("^union %d+$")) then name = nil end
  end
  if type(name) ~= "string" then
    lib.argerror(fname, "ctype must be a type name (string) or a named ctype, got " .. tostring(ctype), 3)
  end
  local ok, ct = pcall(ffi.typeof, name)
  if not ok then
    lib.argerror(fname, ("unknown ctype '%s' (declare it with par.cdef): %s"):format(name, ct), 3)
  end
  local okz, size = pcall(ffi.sizeof, ct)
  if not okz or not size or size == 0 then
    lib.argerror(fname, ("ctype '%s' has no fixed size"):format(name), 3)
  end
  return ct, name, size
end

local function alloc(bytes, fname)
  local rc = C.ffipar_shm_new(shmp, bytes)
  if rc ~= 0 then error(("%s: cannot allocate %d bytes: %s"):format(fname, bytes, select(2, lib.fail(rc))), 3) end
  return shmp[0]
end

---- arrays ----

local methods = {}
local views = {}            -- element name .. checked flag -> view ctype
local names = setmetatable({}, { __mode = "k" })

local view_info = {}        -- view ctype id -> { elem = name, checked = bool }

function M._is_array(a) return view_info[tonumber(ffi.typeof(a))] ~= nil end

--- The raw typed pointer (valid while the array handle is alive).
function methods.ptr(a)
  if type(a) ~= "cdata" or not view_info[tonumber(ffi.typeof(a))] then
    lib.argerror("a:ptr", "expected a par.array as self (use a:method()), got " .. lib.show(a))
  end
  return a.p
end

local function describe(a)
  local info = view_info[tonumber(ffi.typeof(a))]
  return names[a] or ("array<%s>[%d]"):format(info.elem, a.n)
end

local function index_error(a, i)
  error(("ffipar: index %s out of bounds for checked array '%s' of length %d")
    :format(tostring(i), describe(a), a.n), 3)
end

-- The race check (see ffipar.check): cur[0] is this state's strand, 0
-- outside strands. Every access of a strand is one call to the shim, which
-- returns at once when the slot already records the strand (the common
-- case). (A test of that in Lua would make two paths in the caller's loop:
-- the JIT would compile the first pass's and leave its trace on the other.)
local cur = check.cur

local function race_error(a, i, other, mine, level)
  error(check.race_message(describe(a), i, other, mine, cur[0]), level + 1)
end

local function mark_read(a, i, level)
  local me = cur[0]
  if me ~= 0 then
    local other = C.ffipar_race_read(a.marks, i, me)
    if other ~= 0 then race_error(a, i, other, "read", level + 1) end
  end
end

local function mark_write(a, i, level)
  local me = cur[0]
  if me ~= 0 then
    local other = C.ffipar_race_write(a.marks, i, me)
    if other ~= 0 then race_error(a, i, other, "written", level + 1) end
  end
end

-- An element of a checked array of structs (or arrays) is a checked
-- reference: reading a field is a read of the slot, writing one a write.
-- Fields that are themselves structs or arrays give checked references too.
local elem_mt = {}
local aggregate = {}        -- ctype id -> true for references to structs, unions, arrays

local function is_aggregate(v)
  if type(v) ~= "cdata" then return false end
  local id = tonumber(ffi.typeof(v))
  local agg = aggregate[id]
  if agg == nil then
    agg = tostring(ffi.typeof(v)):find("&", 1, true) ~= nil   -- "T &", "double (&)[3]"
    aggregate[id] = agg
  end
  return agg
end

-- A value to store: a checked reference stands for its contents (a read).
local function plain(v, level)
  if getmetatable(v) == elem_mt then
    mark_read(v.a, v.i, level + 1)
    return v.r
  end
  return v
end

elem_mt.__index = function(e, k)
  mark_read(e.a, e.i, 2)
  local v = e.r[k]
  if is_aggregate(v) then return setmetatable({ a = e.a, i = e.i, r = v }, elem_mt) end
  return v
end
elem_mt.__newindex = function(e, k, v)
  mark_write(e.a, e.i, 2)
  e.r[k] = plain(v, 2)
end
elem_mt.__tostring = function(e)
  return ("ffipar: checked element %d of '%s'"):format(e.i, describe(e.a))
end

local function view_ctype(elem, name, checked)
  local key = checked and name .. "\0checked" or name
  local ct = views[key]
  if ct then return ct end
  ct = ffi.typeof("struct { void *obj; double n; $ *p; uint64_t *marks; }", elem)
  local mt = {
    __len = function(a) return a.n end,
    __gc = function(a) C.ffipar_obj_release(a.obj) end,
    __tostring = function(a)
      return ("ffipar.array<%s>[%d]%s: %s"):format(name, a.n, checked and " checked" or "",
        tostring(a.p))
    end,
  }
  if not checked then
    mt.__index = function(a, i)
      if type(i) == "number" then return a.p[i] end
      return methods[i]
    end
    mt.__newindex = function(a, i, v) a.p[i] = v end
  elseif is_aggregate(ffi.new(ffi.typeof("$[1]", elem))[0]) then
    mt.__index = function(a, i)
      if type(i) == "number" then
        if i < 0 or i >= a.n or i % 1 ~= 0 then index_error(a, i) end
        return setmetatable({ a = a, i = i, r = a.p[i] }, elem_mt)
      end
      return methods[i]
    end
    mt.__newindex = function(a, i, v)
      if type(i) ~= "number" or i < 0 or i >= a.n or i % 1 ~= 0 then index_error(a, i) end
      mark_write(a, i, 2)
      a.p[i] = plain(v, 2)
    end
  else
    -- mark_read and mark_write written out: fewer frames for the JIT.
    mt.__index = function(a, i)
      if type(i) == "number" then
        if i < 0 or i >= a.n or i % 1 ~= 0 then index_error(a, i) end
        local me = cur[0]
        if me ~= 0 then
          local other = C.ffipar_race_read(a.marks, i, me)
          if other ~= 0 then race_error(a, i, other, "read", 2) end
        end
        return a.p[i]
      end
      return methods[i]
    end
    mt.__newindex = function(a, i, v)
      if type(i) ~= "number" or i < 0 or i >= a.n or i % 1 ~= 0 then index_error(a, i) end
      local me = cur[0]
      if me ~= 0 then
        local other = C.ffipar_race_write(a.marks, i, me)
        if other ~= 0 then race_error(a, i, other, "written", 2) end
      end
      a.p[i] = v
    end
  end
  ffi.metatype(ct, mt)
  views[key] = ct
  view_info[tonumber(ct)] = { elem = name, checked = checked, ptr = ffi.typeof("$ *", elem) }
  codec.register_ctype(ct, "shm")
  return ct
end

-- A checked array's memory: the elements, then 3 uint64_t marks a slot
-- (see csrc/shm.c) from the first 8-byte boundary after them.
local MARKS = 24
local function marks_offset(size, n)
  return math.ceil(size * n / 8) * 8
end

local function make_view(obj, elem, name, n, checked, size)
  local ct = view_ctype(elem, name, checked)
  local data = C.ffipar_shm_data(obj)
  local marks = checked and ffi.cast("uint64_t *", ffi.cast("char *", data) + marks_offset(size, n)) or nil
  return ct(obj, n, ffi.cast(view_info[tonumber(ct)].ptr, data), marks)
end

--- A shared array of n elements of ctype, zeroed; 0-based a[i], #a, a:ptr().
-- opts.checked: bounds and the race check (see par.phase); opts.name names it in errors.
function M.array(ctype, n, opts)
  local elem, name, size = resolve(ctype, "ffipar.array")
  lib.count(n, "ffipar.array", "length", 0, nil, 2)
  if type(opts) ~= "nil" and type(opts) ~= "table" then
    lib.argerror("ffipar.array", "options must be a table or nil, got " .. type(opts))
  end
  local checked = opts and opts.checked
  if type(checked) == "nil" then checked = check.on() end   -- check mode: every array unless told
  checked = checked and true or false
  local bytes = checked and marks_offset(size, n) + n * MARKS or n * size
  if bytes > MAX_BYTES then
    lib.argerror("ffipar.array", ("length %d of '%s' is too large (%.0f bytes)"):format(n, name, bytes))
  end
  local obj = alloc(bytes, "ffipar.array")
  if checked then C.ffipar_check_arrays(1) end
  local a = make_view(obj, elem, name, n, checked, size)
  if opts and opts.name ~= nil then names[a] = tostring(opts.name) end
  return a
end

M._methods = { array = methods }

---- single shared values ----

--- A shared value of ctype (zeroed, or set from init); a typed pointer.
function M.new(ctype, init)
  local ct, name, size = resolve(ctype, "ffipar.new")
  local obj = alloc(size, "ffipar.new")
  local p = ffi.cast(ffi.typeof("$ *", ct), C.ffipar_shm_data(obj))
  if type(init) ~= "nil" then
    local ok, err = pcall(function() p[0] = init end)
    if not ok then
      C.ffipar_obj_release(obj)
      lib.argerror("ffipar.new", ("bad initializer for '%s': %s"):format(name, M.readable(err)))
    end
  end
  p = ffi.gc(p, function() C.ffipar_obj_release(obj) end)
  codec.register_value(p, "shm", obj, { t = "new", ct = name })
  return p
end

---- crossing ----

function M.to_wire(a)
  local info = view_info[tonumber(ffi.typeof(a))]
  return a.obj, { t = "array", elem = info.elem, n = a.n, checked = info.checked, name = names[a] }
end

local function what(params)
  local kind = params.t == "new" and "par.new value" or params.t == "array" and "par.array"
    or "typed channel"
  return ("%s of '%s'"):format(kind, params.ct or params.elem)
end

-- Why a handle cannot cross (its type is unknown to other states), or nil.
-- codec asks before it sends one (an array, a par.new value or a typed
-- channel), so the error is at the sender's line.
local portable = {}         -- type names found portable (words only grow)
function M.cannot_cross(params)
  local name = params.ct or params.elem
  if portable[name] then return nil end
  codec.sync_cdefs()
  for w in name:gmatch("[%a_][%w_]*") do
    if not words[w] then
      return ("is a %s, a type other threads do not know ('%s' was not declared with "
        .. "par.cdef): declare it with par.cdef, not ffi.cdef"):format(what(params), w)
    end
  end
  portable[name] = true
end

function M.from_wire(obj, params)
  local ok, elem = pcall(ffi.typeof, params.ct or params.elem)
  if not ok then            -- no reference taken yet: the message still owns it
    error(("ffipar: received a %s, a type this thread does not know (declare it with "
      .. "par.cdef, not ffi.cdef): %s"):format(what(params), elem), 0)
  end
  C.ffipar_obj_retain(obj)
  if params.t == "new" then
    local p = ffi.cast(ffi.typeof("$ *", elem), C.ffipar_shm_data(obj))
    p = ffi.gc(p, function() C.ffipar_obj_release(obj) end)
    codec.register_value(p, "shm", obj, params)
    return p
  end
  local a = make_view(obj, elem, params.elem, params.n, params.checked, ffi.sizeof(elem))
  if params.name then names[a] = params.name end
  return a
end

---- the race check's phases ----

--- Run fn(...) as one parallel phase: a checked array slot written by two
-- threads before it returns raises an error. Joins an enclosing phase.
function M.phase(fn, ...)
  if type(fn) ~= "function" then
    lib.argerror("ffipar.phase", "argument #1 must be a function, got " .. type(fn))
  end
  if C.ffipar_phase_current() ~= 0 then return fn(...) end
  C.ffipar_phase_begin()
  return lib.finish(C.ffipar_phase_end, pcall(fn, ...))
end

return M
