-- test/misuse_child.lua: the calls of the misuse suite for one part of the
-- API, run by test/test_misuse.lua in a child process so that a crash names
-- the call that made it.
--   luajit test/misuse_child.lua PART [FIRST]
-- PART: "functions" or a kind of test/api.lua; FIRST: the number of the first
-- call to make (after a crash, the parent goes on after the crashing call).
-- Prints "CALL n desc" before each call, "FAIL n desc: why" or "SKIP n desc:
-- why" after it, and "DONE calls skipped" at the end.
local ffi = require "ffi"
local par = require "ffipar"
local api = require "api"

local part, first = arg[1], tonumber(arg[2]) or 1

local function isint(v, lo, hi)
  return type(v) == "number" and v == math.floor(v) and v >= lo and v <= hi
end
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local function is_handle(v)
  if type(v) == "table" then return v.submit ~= nil end
  if type(v) ~= "cdata" then return false end
  return pcall(require("ffipar.codec").encode, "x", "value", 1, 1, v) and true or false
end

local anchors = {}     -- keeps the memory of sample pointers alive during a call
local function keep(v) anchors[#anchors + 1] = v; return v end

local function never() return false end
local LONG = 10        -- seconds or steps beyond which an accepted value is skipped

-- Argument types (see test/api.lua): sample(), accepts(v) -> true | false |
-- nil (either), long(v) -> why an accepted v would wait or run for ever.
local T = {}
T["any"] = { sample = function() return nil end, accepts = function() return nil end }
T["function"] = { sample = function() return function() return 0 end end,
  accepts = function(v) return type(v) == "function" end }
local function timeout_ok(v) return type(v) == "nil" or (type(v) == "number" and v >= 0 and v == v) end
T["timeout?"] = { sample = function() return 0 end, accepts = timeout_ok }
T["wait?"] = { sample = function() return 0 end, accepts = timeout_ok,
  long = function(v) if type(v) == "nil" or v > LONG then return "a valid timeout: waits for ever" end end }
T["seconds"] = { sample = function() return 0 end,
  accepts = function(v) return v ~= nil and timeout_ok(v) end,
  long = function(v) if v > LONG then return "valid: sleeps for ever" end end }
T["color?"] = { sample = function() return "c" end,
  accepts = function(v) return type(v) == "nil" or type(v) == "string" or isint(v, 0, 2^45 - 1) end }
T["int"] = { sample = function() return 3 end,
  accepts = function(v)
    if type(v) == "cdata" and ffi.istype(int64_t, v) then return true end
    if type(v) == "cdata" and ffi.istype(uint64_t, v) then return v < 2^63 end
    return isint(v, -2^63, 2^63 - 1)
  end }
T["int?"] = { sample = function() return 3 end,
  accepts = function(v) return type(v) == "nil" or T["int"].accepts(v) end }
T["number"] = { sample = function() return 1 end, accepts = function(v) return type(v) == "number" end }
T["count0"] = { sample = function() return 3 end, accepts = function(v) return isint(v, 0, 2^53) end }
T["steps"] = { sample = function() return 3 end, accepts = function(v) return isint(v, 0, 2^53) end,
  long = function(v) if v > 1e6 then return "valid: runs 2^53 steps" end end }
T["count1"] = { sample = function() return 2 end, accepts = function(v) return isint(v, 1, 2^31 - 1) end }
T["cap"] = { sample = function() return 4 end, accepts = function(v) return isint(v, 1, 2^24) end }
T["workers"] = { sample = function() return 1 end,
  accepts = function(v) return type(v) == "nil" or isint(v, 1, 1024) end }
T["barrier_n"] = { sample = function() return 2 end, accepts = function(v) return isint(v, 1, 65535) end }
T["units?"] = { sample = function() return 1 end,
  accepts = function(v) return type(v) == "nil" or isint(v, 0, 2^31 - 1) end }
T["release?"] = { sample = function() return 1 end,
  accepts = function(v) return type(v) == "nil" or isint(v, 1, 2^31 - 1) end }
T["string?"] = { sample = function() return "misuse" end,
  accepts = function(v) return type(v) == "nil" or type(v) == "string" end }
T["bool?"] = { sample = function() return false end,
  accepts = function(v) return type(v) == "nil" or type(v) == "boolean" end }
T["opts?"] = { sample = function() return nil end,
  accepts = function(v) return type(v) == "nil" or type(v) == "table" end }
local function ctype_ok(v)
  if type(v) == "string" then return nil end      -- known or not: either
  return false
end
T["ctype"] = { sample = function() return "double" end, accepts = ctype_ok }
T["ctype?"] = { sample = function() return "double" end,
  accepts = function(v) if type(v) == "nil" then return true end return ctype_ok(v) end }
T["cdecl"] = { sample = function() return "typedef struct { int x; } misuse_t;" end,
  accepts = function(v) if type(v) == "string" then return nil end return false end }
T["value"] = { sample = function() return 1 end,
  accepts = function(v)
    if type(v) == "nil" then return false end
    if type(v) == "cdata" then
      return ffi.istype(int64_t, v) or ffi.istype(uint64_t, v) or is_handle(v)
    end
    if type(v) == "table" then return nil end      -- a handle or a plain table
    return true
  end }
T["item"] = { sample = function() return 1.5 end,
  accepts = function(v)
    if type(v) == "number" then return true end
    if type(v) == "cdata" and (ffi.istype(int64_t, v) or ffi.istype(uint64_t, v)) then return nil end
    return false
  end }
local darr = ffi.typeof("double[?]")
local dptr = ffi.typeof("double *")
T["darray"] = { sample = function() return ffi.new("double[8]") end,
  accepts = function(v)
    if type(v) ~= "cdata" then return false end
    if ffi.istype(dptr, v) then return v ~= nil end
    local ok, len = pcall(function() return #v end)
    if ok and tostring(v):match("^ffipar%.array<double>") then return len >= 2 end
    if tostring(ffi.typeof(v)):match("^ctype<double %[%d+%]>$") then return ffi.sizeof(v) >= 16 end
    return false
  end }
par.cdef "typedef struct { int32_t a; double b; } misuse_rec_t;"
local recp = ffi.typeof("misuse_rec_t *")
local rect = ffi.typeof("misuse_rec_t")
T["rec"] = { sample = function() return ffi.new("misuse_rec_t") end,
  accepts = function(v)
    if type(v) == "table" then return nil end
    return type(v) == "cdata" and ffi.istype(rect, v) and v ~= nil
  end }
T["rec_into?"] = { sample = function() return nil end,
  accepts = function(v) return type(v) == "nil" or (ffi.istype(rect, v) and v ~= nil) end }
T["recarray"] = { sample = function() return ffi.new("misuse_rec_t[8]") end,
  accepts = function(v)
    if type(v) ~= "cdata" then return false end
    if ffi.istype(recp, v) then return v ~= nil end
    return tostring(ffi.typeof(v)):match("^ctype<struct %d+ %[(%d+)%]>$") ~= nil and ffi.sizeof(v) >= 2 * ffi.sizeof(rect)
  end }
T["lo?"] = { sample = function() return nil end,
  accepts = function(v) return type(v) == "nil" or isint(v, 0, 6) end }
T["held_mutex"] = { sample = function() local m = par.mutex(); m:lock(); return m end,
  accepts = never }
T["channels"] = { sample = function() local ch = par.channel(2); ch:push(1); return { ch } end,
  accepts = never }
T["table"] = { sample = function() return { 1, x = "y" } end,
  accepts = function(v) if type(v) == "table" then return nil end return false end }
T["source"] = { sample = function() return { 1, 2 } end,
  accepts = function(v)
    if type(v) == "table" then return nil end
    return require("ffipar.share").is_share(v) or false
  end }
T["aptr"] = { sample = function() return keep(par.array("double", 2)):ptr() end,
  accepts = never }

T["uvmod"] = { sample = function() return require("luv") end, accepts = never }
T["future"] = { sample = function()
    local t = par.spawn(function() return 1 end)
    assert(t:join(10))
    return t
  end, accepts = never }
T["pool"] = { sample = function() return par.pool(1) end, accepts = never }
T["channel"] = { sample = function() return par.channel(2) end, accepts = never }
T["max?"] = { sample = function() return nil end,
  accepts = function(v) return type(v) == "nil" or isint(v, 1, 2^24) end }
T["awaitable"] = { sample = function() return par.channel(2) end, accepts = never }

-- The wrong values every argument gets.
local function classes()
  local c = {
    { "nil", nil }, { "false", false }, { "true", true }, { "a string", "x" },
    { "a table", {} }, { "a function", function() return 0 end },
    { "NULL void*", ffi.cast("void *", nil) }, { "NULL double*", ffi.cast("double *", nil) },
    { "float[4]", ffi.new("float[4]") }, { "int32_t[8]", ffi.new("int32_t[8]") },
    { "double[1]", ffi.new("double[1]") },
    { "par.array<int32_t>[8]", par.array("int32_t", 8) },
    { "par.array<char>[2]", par.array("char", 2) },
    { "par.array<double>[1]", par.array("double", 1) },
    { "int64 5", ffi.new("int64_t", 5) }, { "uint64 max", 0xFFFFFFFFFFFFFFFFULL },
    { "NaN", 0 / 0 }, { "inf", math.huge }, { "-inf", -math.huge }, { "-1", -1 },
    { "0.5", 0.5 }, { "2^53", 2^53 }, { "1e300", 1e300 },
    { "a gate", par.gate() }, { "NULL misuse_rec_t*", ffi.cast("misuse_rec_t *", nil) },
    { "misuse_rec_t[1]", ffi.new("misuse_rec_t[1]") }, { "a par.array<double>", par.array("double", 8) },
  }
  return c
end

-- The call site: an error at the caller's line names this line.
local function invoke(f, n, a)
  local r = { f(unpack(a, 1, n)) }
  return r
end
local CALL_LINE = debug.getinfo(invoke, "S").linedefined + 1
local SRC = debug.getinfo(invoke, "S").short_src

local count, skipped, failed = 0, 0, 0
local function out(s) io.write(s, "\n"); io.flush() end

-- One call: f(args[1..n]); the error must start with "SRC:LINE: fname:";
-- accepts: false -> it must raise; true/nil -> it may return; "valid" -> it
-- must return (the control call with every argument valid).
local function try(desc, fname, f, n, args, accepts, long, reset)
  count = count + 1
  if count < first then return end
  if accepts ~= false and long then
    skipped = skipped + 1
    out(("SKIP %d %s: %s"):format(count, desc, long))
    return
  end
  out(("CALL %d %s"):format(count, desc))
  local ok, r = pcall(invoke, f, n, args)
  if reset then pcall(reset) end
  anchors = {}
  if ok then
    if accepts == false then
      failed = failed + 1
      out(("FAIL %d %s: returned %s instead of raising"):format(count, desc, tostring(r[1])))
    end
    return
  end
  if accepts == "valid" then
    failed = failed + 1
    out(("FAIL %d %s: a valid call raised: %s"):format(count, desc, tostring(r)))
    return
  end
  local want = ("%s:%d: %s:"):format(SRC, CALL_LINE, fname)
  if type(r) ~= "string" or r:sub(1, #want) ~= want then
    failed = failed + 1
    out(("FAIL %d %s: error does not start with '%s': %s"):format(count, desc, want, tostring(r)))
  end
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

-- Every argument of one entry with every wrong value; the other arguments valid.
local function fuzz_args(label, fname, entry, get_f, make_self)
  local types = {}
  for i = 2, #entry do
    if entry[i] ~= "..." then
      types[#types + 1] = assert(T[entry[i]], "unknown argument type " .. entry[i])
    end
  end
  local base = make_self and 1 or 0
  if entry.control ~= false then   -- the control: valid arguments (so a refusal below is for the wrong value)
    local self, reset = nil, nil
    local args = {}
    if make_self then self, reset = make_self(); args[1] = self end
    for j = 1, #types do args[base + j] = types[j].sample() end
    try(label .. " with valid arguments", fname, get_f(self), base + #types, args, "valid", nil, reset)
  end
  for i = 1, #types do
    for _, c in ipairs(classes()) do
      local self, reset = nil, nil
      local args = {}
      if make_self then self, reset = make_self(); args[1] = self end
      for j = 1, #types do args[base + j] = types[j].sample() end
      args[base + i] = c[2]
      local acc = types[i].accepts(c[2])
      local long = acc ~= false and types[i].long and types[i].long(c[2])
      try(("%s argument #%d = %s"):format(label, i, c[1]), fname, get_f(self), base + #types,
        args, acc, long, reset)
    end
  end
  return types
end

-- The public names that test/api.lua does not list.
local function public_names()
  local listed = {}
  for _, e in ipairs(api.functions) do listed[e[1]] = true end
  local missing = {}
  for name in pairs(par._where) do
    local v = par[name]
    if type(v) == "table" then
      for k, f in pairs(v) do
        if type(f) == "function" and not listed[name .. "." .. k] then
          missing[#missing + 1] = "par." .. name .. "." .. k
        end
      end
    elseif not listed[name] then
      missing[#missing + 1] = "par." .. name
    end
  end
  par.channel(1, "double")       -- makes the typed channel methods
  local modules = {}
  for _, mod in ipairs(par._modules) do
    local m = require("ffipar." .. mod)
    for kind, methods in pairs(m._methods or {}) do modules[kind] = methods end
    if m._typed then   -- every typed channel has the same methods
      modules["typed channel"] = m._typed.double.methods
      modules["struct channel"] = m._typed.double.methods
    end
  end
  for kind, methods in pairs(modules) do
    local entry
    for _, k in ipairs(api.kinds) do if k[1] == kind then entry = k end end
    if not entry then
      missing[#missing + 1] = "the kind " .. kind
    else
      local names = {}
      for _, e in ipairs(entry.methods) do names[e[1]] = true end
      for name, f in pairs(methods) do
        if type(f) == "function" and not names[name] then
          missing[#missing + 1] = entry.var .. ":" .. name
        end
      end
    end
  end
  local has_luv = pcall(require, "luv")
  if has_luv then   -- the uv adapter's functions and its watch's methods
    local uv_listed = {}
    for _, e in ipairs(api.uv) do uv_listed[e[1]] = true end
    local uvm = require "ffipar.uv"
    for k, f in pairs(uvm) do
      if type(f) == "function" and not k:match("^_") and not uv_listed[k] then
        missing[#missing + 1] = "ffipar.uv." .. k
      end
    end
    for kind, methods in pairs(uvm._methods or {}) do modules[kind] = methods end
    for kind, methods in pairs(modules) do
      local entry
      for _, k in ipairs(api.kinds) do if k[1] == kind then entry = k end end
      if kind == "watch" and entry then
        local names = {}
        for _, e in ipairs(entry.methods) do names[e[1]] = true end
        for name, f in pairs(methods) do
          if type(f) == "function" and not name:match("^__") and not names[name] then
            missing[#missing + 1] = "w:" .. name
          end
        end
      end
    end
  end
  -- and every kind of the list was found in a module
  for _, k in ipairs(api.kinds) do
    if not (k.needs and not has_luv) and not modules[k[1]] then
      missing[#missing + 1] = "test/api.lua lists a kind no module has: " .. k[1]
    end
  end
  table.sort(missing)
  return missing
end

if part == "names" then
  for _, name in ipairs(public_names()) do
    count = count + 1
    failed = failed + 1
    out(("FAIL %d public name missing from test/api.lua: %s"):format(count, name))
  end
  if count == 0 then count = 1 end     -- the check itself counts as one call
elseif part == "functions" then
  for _, e in ipairs(api.functions) do
    local name = e[1]
    local function get_f()
      local mod, fn = name:match("^(%w+)%.(%w+)$")
      if mod then return par[mod][fn] end
      return par[name]
    end
    local label = "par." .. name
    fuzz_args(label, "ffipar." .. name, e, get_f, nil)
    -- extra arguments are ignored or refused, never a crash
  end
elseif part == "uv" then
  local uvm = require "ffipar.uv"
  for _, e in ipairs(api.uv) do
    fuzz_args("uv." .. e[1], "ffipar.uv." .. e[1], e, function() return uvm[e[1]] end, nil)
  end
else
  local kind
  for _, k in ipairs(api.kinds) do if k[1] == part then kind = k end end
  assert(kind, "no kind " .. tostring(part))
  local proto = kind.make(par)
  -- wrong selves: plain values and a handle of every other kind
  local selves = {
    { "nil", nil, false }, { "1", 1, false }, { "a string", "x", false }, { "a table", {}, false },
    { "true", true, false }, { "NULL void*", ffi.cast("void *", nil), false },
    { "a par.new double", par.new("double"), false },
  }
  if type(proto) == "cdata" and pcall(ffi.typeof, proto) then
    local ok, null = pcall(ffi.cast, ffi.typeof(proto), nil)
    if ok and null == nil then selves[#selves + 1] = { "a NULL " .. kind[1], null, false } end
  end
  for _, other in ipairs(api.kinds) do
    if other ~= kind and (not other.needs or pcall(require, other.needs)) then
      -- the two channels share close/closed/cap/iter: either outcome there
      local same_family = other.var == kind.var
      selves[#selves + 1] = { "a " .. other[1], other.make(par), (not same_family) and false or nil }
    end
  end
  -- tostring of a NULL handle and of a closed one: a string, never a crash
  for _, s in ipairs(selves) do
    if s[1] == "a NULL " .. kind[1] then
      try("tostring(" .. s[1] .. ")", "tostring", tostring, 1, { s[2] }, nil)
    end
  end
  if kind.closed then
    try("tostring(a closed " .. kind[1] .. ")", "tostring", tostring, 1, { kind.closed(par) }, nil)
  end
  for _, e in ipairs(kind.methods) do
    local name = e[1]
    local fname = kind.var .. ":" .. name
    local label = kind.var .. ":" .. name
    local types = {}
    for i = 2, #e do if e[i] ~= "..." then types[#types + 1] = T[e[i]] end end
    local function valid_args(self)
      local a = { self }
      for j = 1, #types do a[j + 1] = types[j].sample() end
      return a
    end
    local f = proto[name]
    assert(type(f) == "function", fname .. " is in test/api.lua but not a method")
    for _, s in ipairs(selves) do
      try(("%s with self = %s"):format(label, s[1]), fname, f, 1 + #types, valid_args(s[2]), s[3])
    end
    if kind.closed then
      local function go()
        local obj = kind.closed(par)
        try(("%s on a closed %s"):format(label, kind[1]), fname, f, 1 + #types, valid_args(obj), nil)
      end
      go()
    end
    -- the right self, valid arguments: must not raise at all
    fuzz_args(label, fname, e, function() return f end, function()
      local obj = kind.make(par)
      if e.before then e.before(obj) end
      return obj, kind.reset and function() kind.reset(obj) end
    end)
  end
end

out(("DONE %d %d %d"):format(count, skipped, failed))
os.exit(0)
