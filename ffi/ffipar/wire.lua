-- ffipar.wire: the wire format of values crossing between Lua states, in
-- pure Lua (no ffi), so a worker that receives only plain values and
-- functions never pays for loading the FFI. Plain values go through
-- string.buffer; Lua functions cross as bytecode with their upvalues;
-- loaded modules and their members are looked up again by name. cdata is
-- handed to ffipar.codec (loaded only when cdata is met), which turns
-- ffipar handles into references to shared C objects.
local buffer = require "string.buffer"

local M = {}

local TAG = "\0ffipar"
M.TAG = TAG
local buf = buffer.new()
local dbuf = buffer.new()

-- Loaded modules and their members, by value; rebuilt when package.loaded
-- has grown since the last look.
local modmap, modcount = {}, -1
local looked = false     -- package.loaded counted during this encode
local function lookup_module(v)
  if looked then return modmap[v] end
  looked = true
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

local dumps = setmetatable({}, { __mode = "k" })

-- Where a value sits, for error messages only: ctx keeps the path (table
-- keys and upvalue names) as a stack, turned into text when something is
-- refused, so the common case formats no strings.
function M.where(ctx)
  local s = ("%s #%d"):format(ctx.label, ctx.index)
  for i = 1, ctx.depth do
    local k = ctx.path[i]
    if ctx.isup[i] then s = ("upvalue '%s' of %s"):format(k, s)
    elseif type(k) == "string" then s = ("%s[%q]"):format(s, k)
    else s = ("%s[%s]"):format(s, tostring(k)) end
  end
  return s
end

local function push(ctx, k, isup)
  local d = ctx.depth + 1
  ctx.depth, ctx.path[d], ctx.isup[d] = d, k, isup
end

local conv

-- The stand-in for the message's function number i; only read by the
-- encoder, so one per number serves every message.
local fn_markers = {}
local function fn_marker(i)
  local m = fn_markers[i]
  if not m then m = { [TAG] = "f", i = i }; fn_markers[i] = m end
  return m
end

local function conv_function(f, ctx)
  local code = dumps[f]                -- dumped before: a Lua function, not a module's
  if not code then
    local known = lookup_module(f)
    if known then return known end
    if debug.getinfo(f, "S").what == "C" then
      error(M.where(ctx) .. " is a C function that belongs to no loaded module", 0)
    end
  end
  local id = ctx.fnid[f]
  if id then return fn_marker(id) end
  id = #ctx.fns + 1
  ctx.fnid[f] = id
  if not code then
    code = string.dump(f)
    dumps[f] = code
  end
  local entry = { c = code }
  ctx.fns[id] = entry
  local ups, i, nest = {}, 1, ctx.nest
  ctx.nest = 0                       -- upvalues sit in the message's function list
  while true do
    local name, val = debug.getupvalue(f, i)
    if name == nil then break end
    push(ctx, name, true)
    ups[i] = conv(val, ctx)
    ctx.depth = ctx.depth - 1
    i = i + 1
  end
  ctx.nest = nest
  entry.n, entry.u = i - 1, ups
  return fn_marker(id)
end

-- The stand-in for the message's shared table number i (see count_refs).
local tab_markers = {}
local function tab_marker(i)
  local m = tab_markers[i]
  if not m then m = { [TAG] = "r", i = i }; tab_markers[i] = m end
  return m
end

-- Tables nest at most this deep in a value (string.buffer stops at 100
-- levels, and a message wraps values in two more).
local MAX_NEST = 90
M.MAX_NEST = MAX_NEST

local function too_deep(ctx)
  error(("%s #%d has tables nested more than %d levels deep"):format(ctx.label, ctx.index,
    MAX_NEST), 0)
end

-- The entries of t: a loop with nothing else in it, which the JIT compiles.
local function count(t)
  local n = 0
  for _ in next, t do n = n + 1 end
  return n
end
M.count = count

--- t's keys and values in pairs order, and their number. A walk that runs
-- loops for each entry goes over these by number instead of a pairs loop:
-- LuaJIT 2.1 before April 2022 (Debian 12's among them) can end a pairs
-- loop whose body runs loops after its first entry, once the JIT gives up
-- on it (LuaJIT issue 827); a loop that only stores compiles, and an
-- explicit next() call is not compiled (130 ns an entry).
function M.entries(t)
  local ks, vs, n = {}, {}, 0
  for k, v in next, t do n = n + 1; ks[n], vs[n] = k, v end
  return ks, vs, n
end

-- conv_table's copy of a table has fewer entries than the table: LuaJIT 2.1
-- before April 2022 (Debian 12's among them) can end a pairs loop whose
-- body runs loops early, once the JIT gives up on it (LuaJIT issue 827).
-- Loud rather than a value that silently lost entries.
local function lost(ctx)
  error(M.where(ctx) .. " lost entries while it was converted: this LuaJIT ends some pairs "
    .. "loops early (LuaJIT issue 827, fixed in April 2022); upgrade LuaJIT", 0)
end

local function conv_table(t, ctx)
  local known = lookup_module(t)
  if known then return known end
  if ctx.seen[t] then error(M.where(ctx) .. " is a table that contains itself", 0) end
  -- A table reached more than once is written once, in the message's list
  -- of shared tables, and named by its number everywhere it appears.
  local shared = (ctx.refs[t] or 1) > 1
  local nest = ctx.nest
  if shared then
    local id = ctx.tabid[t]
    if id then return tab_marker(id) end
    id = #ctx.tabs + 1
    ctx.tabid[t], ctx.tabs[id] = id, t
    ctx.marked, ctx.nest = true, 1
  else
    if nest >= MAX_NEST then too_deep(ctx) end
    ctx.nest = nest + 1
  end
  ctx.seen[t] = true
  local out
  for k, v in pairs(t) do
    push(ctx, k, false)
    local ck, cv = conv(k, ctx), conv(v, ctx)
    ctx.depth = ctx.depth - 1
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
  ctx.nest = nest
  if out and count(out) ~= count(t) then lost(ctx) end
  if shared then
    local id = ctx.tabid[t]
    ctx.tabs[id] = out or t
    return tab_marker(id)
  end
  return out or t
end

-- How many times each table (and function) is reached from v, so that
-- conv_table knows the shared ones before it writes their first copy.
-- Depth d is bounded: conv stops at MAX_NEST levels of tables that are not
-- shared, and what is not counted is copied where it appears.
local COUNT_DEPTH = 1000
local function count_refs(v, refs, d)
  local tv = type(v)
  if d > COUNT_DEPTH then return end
  if tv == "table" then
    local n = refs[v]
    if n then refs[v] = n + 1; return end
    refs[v] = 1
    if lookup_module(v) then return end
    for k, x in pairs(v) do
      if type(k) == "table" or type(k) == "function" then count_refs(k, refs, d + 1) end
      local tx = type(x)
      if tx == "table" or tx == "function" then count_refs(x, refs, d + 1) end
    end
  elseif tv == "function" then
    if refs[v] then return end
    refs[v] = 1
    local i = 1
    while true do
      local name, x = debug.getupvalue(v, i)
      if name == nil then break end
      local tx = type(x)
      if tx == "table" or tx == "function" then count_refs(x, refs, d + 1) end
      i = i + 1
    end
  end
end

-- True when t is a tree of plain values: numbers, strings, booleans and
-- tables of them, each table reached once, nested at most MAX_NEST deep,
-- keys not tables. string.buffer then encodes it as it is, with no
-- conversion. `seen` holds the sub-tables met so far (the root is checked
-- by identity: a flat table inserts nothing). After SEEN_MAX sub-tables
-- tree gives up (returns nil) and big_tree walks again, marking instead.
local SEEN_MAX = 256
local seen_n = 0
local function tree(t, seen, root, d)
  for k, v in next, t do
    local tv = type(v)
    if tv == "table" then
      if seen[v] or v == root or d >= MAX_NEST then return false end
      seen_n = seen_n + 1
      if seen_n > SEEN_MAX then return nil end
      seen[v] = true
      local ok = tree(v, seen, root, d + 1)
      if not ok then return ok end
    elseif tv ~= "number" and tv ~= "string" and tv ~= "boolean" then
      return false
    end
    local tk = type(k)
    if tk ~= "number" and tk ~= "string" and tk ~= "boolean" then return false end
  end
  return true
end

-- The same walk for big tables. A hash set of every sub-table was most of
-- its cost (a 200k-record table: 600k inserts into a 32 MB hash, 150 ms on
-- top of a 50 ms walk), so a sub-table with no metatable is marked instead:
-- it gets MARK as its metatable while the walk runs, and one met already
-- marked is reached twice (shared or cyclic). The marked tables are listed
-- in `marks` from `base` and unmarked by big_plain, error or not (marks
-- and metatables are invisible to string.buffer and to conv). A table with
-- a metatable of its own goes in `seen`.
local MARK = {}
local marks, nmarks = {}, 0
local getmt, setmt = getmetatable, setmetatable
local function big_tree(t, seen, root, d)
  for k, v in next, t do
    local tv = type(v)
    if tv == "table" then
      if v == root or d >= MAX_NEST then return false end
      local mt = getmt(v)
      if mt == nil then
        local n = nmarks + 1
        marks[n] = v                -- listed first: only this can run out of memory
        nmarks = n
        setmt(v, MARK)
      elseif mt == MARK or seen[v] then
        return false
      else
        seen[v] = true
      end
      if not big_tree(v, seen, root, d + 1) then return false end
    elseif tv ~= "number" and tv ~= "string" and tv ~= "boolean" then
      return false
    end
    local tk = type(k)
    if tk ~= "number" and tk ~= "string" and tk ~= "boolean" then return false end
  end
  return true
end

-- A marking walk begins at mark_base() and ends with unmark(base), error
-- or not (a walk inside a walk, a finalizer's, stacks its marks).
function M.mark_base() return nmarks end
local function unmark(base)
  for i = nmarks, base + 1, -1 do
    setmt(marks[i], nil)
    marks[i] = nil
  end
  nmarks = base
end
M.unmark = unmark

local function big_plain(t)
  local base = nmarks
  local ok, r = pcall(big_tree, t, {}, t, 1)
  unmark(base)
  if not ok then error(r, 0) end
  return r
end

--- One entry of table root, walked as big_plain walks it (marks stay until
-- unmark): true when it is plain and meets no table met before.
function M.entry_plain(k, v, seen, root)
  local tk = type(k)
  if tk ~= "number" and tk ~= "string" and tk ~= "boolean" then return false end
  local tv = type(v)
  if tv == "table" then
    if v == root then return false end
    local mt = getmt(v)
    if mt == nil then
      local n = nmarks + 1
      marks[n] = v
      nmarks = n
      setmt(v, MARK)
    elseif mt == MARK or seen[v] then
      return false
    else
      seen[v] = true
    end
    return big_tree(v, seen, root, 2)
  end
  return tv == "number" or tv == "string" or tv == "boolean"
end

-- One entry (k, v) of table root, checked alone (the one-call pool:best,
-- whose caller scores some entries itself and sends the others): true when
-- string.buffer carries it as it is (a tree of plain values, root not in
-- it, and unless `own`, no table met twice inside it); false when it
-- crosses only converted (a function, a handle, a table met twice...); nil
-- and the error naming where it was found, as encoding root whole would
-- name it, when it cannot cross. `own`: the caller scores the entry itself,
-- so only whether it can cross matters. Tables met in other entries are
-- not remembered: each entry is scored alone, so a copy of a table two
-- entries share changes nothing.
-- The walk lists the sub-tables (at most SEEN_MAX, then it gives up: the
-- converting walk decides) instead of inserting them in a hash set; a
-- table met twice is found among them after.
local subs, nsubs = {}, 0
local function entry_tree(t, root, d)
  for k, v in next, t do
    local tv = type(v)
    if tv == "table" then
      if v == root or d >= MAX_NEST or nsubs >= SEEN_MAX then return false end
      nsubs = nsubs + 1
      subs[nsubs] = v
      if not entry_tree(v, root, d + 1) then return false end
    elseif tv ~= "number" and tv ~= "string" and tv ~= "boolean" then
      return false
    end
    local tk = type(k)
    if tk ~= "number" and tk ~= "string" and tk ~= "boolean" then return false end
  end
  return true
end

local entry_error
function M.entry_check(k, v, root, label, index, own)
  local tk, tv = type(k), type(v)
  if tk ~= "string" and tk ~= "number" and tk ~= "boolean" then
    return nil, ("%s #%d has a %s as a key; a snapshot's keys are strings, numbers or booleans")
      :format(label, index, tk)
  end
  if tv == "table" then
    nsubs = 1
    subs[1] = v
    local ok = v ~= root and entry_tree(v, root, 2)
    local n = nsubs
    if ok and not own and n > 1 then            -- a table met twice?
      if n > 16 then
        local set = {}
        for i = 1, n do
          if set[subs[i]] then ok = false; break end
          set[subs[i]] = true
        end
      else
        for i = 2, n do
          local x = subs[i]
          for j = 1, i - 1 do
            if subs[j] == x then ok = false; break end
          end
          if not ok then break end
        end
      end
    end
    for i = 1, n do subs[i] = nil end
    if ok then return true end
  elseif tv == "number" or tv == "string" or tv == "boolean" then
    return true
  end
  return entry_error(k, v, root, label, index)
end

local scratch = {}       -- empty between calls; nil while one is running
--- As plain, but a table with more than SEEN_MAX sub-tables is not walked
-- to the end: nil.
local function probe(t)
  local seen = scratch or {}
  scratch = nil
  seen_n = 0
  local ok = tree(t, seen, t, 1)
  if next(seen) == nil then scratch = seen else scratch = {} end
  return ok
end
M.probe = probe

--- True when the table t can cross as string.buffer encodes it (no
-- functions, cdata or other values that need conversion; no shared or
-- cyclic sub-tables; not too deep).
function M.plain(t)
  local ok = probe(t)
  if ok == nil then return big_plain(t) end
  return ok
end
local plain = M.plain

function conv(v, ctx)
  local tv = type(v)
  if tv == "nil" or tv == "boolean" or tv == "number" or tv == "string" then
    return v
  elseif tv == "table" then
    return conv_table(v, ctx)
  elseif tv == "function" then
    ctx.marked = true
    return conv_function(v, ctx)
  elseif tv == "cdata" then
    ctx.cdata = true
    return require("ffipar.codec").conv_cdata(v, ctx)
  elseif tv == "userdata" then
    local known = lookup_module(v)
    if known then return known end
    local ffi = package.loaded.ffi
    if ffi and v == ffi.C then ctx.marked = true; return { [TAG] = "C" } end
  end
  error(M.where(ctx) .. " is a " .. (tv == "thread" and "coroutine" or tv) .. ", which cannot cross between threads", 0)
end

-- Encode values into the module's buffer. Returns the buffer (valid until
-- the next encode) and the list of shared objects the values refer to.
-- Errors are raised `level` above the caller, prefixed with `fname`; values
-- are named "<label> #<first + i - 1>".
local NONE = {}          -- the objects of plain values: never written to

-- The encoder's context, reused: `seen` is scratch that conv leaves empty;
-- `objs` and `fns` leave with the message, so each encode gets its own;
-- release() lets go of everything else it refers to, so a value that was
-- sent is not kept alive here.
local function new_context()
  return { seen = {}, path = {}, isup = {}, fnid = {} }
end
local scratch = new_context()
local function context(label)
  local ctx = scratch
  if ctx.objs then ctx = new_context() end   -- an encode inside an encode (a finalizer?)
  ctx.objs, ctx.fns, ctx.label, ctx.marked, ctx.cdata = {}, {}, label, nil, nil
  ctx.refs, ctx.tabs, ctx.tabid = {}, {}, {}
  return ctx
end

local function release(ctx)
  if ctx.fns[1] then ctx.fnid = {} end
  local path = ctx.path
  for i = 1, #path do path[i] = nil end
  ctx.objs, ctx.fns, ctx.refs, ctx.tabs, ctx.tabid = nil, nil, nil, nil, nil
end

function M.encode(fname, label, first, level, ...)
  local n = select("#", ...)
  local ctx                -- made on the first value that is not plain
  local v = {}
  looked = false
  local slow                -- the values that need conversion
  for i = 1, n do
    local x = select(i, ...)
    local tx = type(x)
    v[i] = x
    if not (tx == "number" or tx == "string" or tx == "boolean" or tx == "nil"
      or (tx == "table" and plain(x))) then
      ctx = ctx or context(label)
      count_refs(x, ctx.refs, 1)
      slow = slow or {}
      slow[#slow + 1] = i
    end
  end
  for j = 1, slow and #slow or 0 do
    local i = slow[j]
    ctx.index, ctx.depth, ctx.nest = first + i - 1, 0, 0
    local ok, r = pcall(conv, v[i], ctx)
    if not ok then
      ctx.seen = {}                          -- left set by the error
      release(ctx)
      error(fname .. ": " .. tostring(r), level + 1)
    end
    v[i] = r
  end
  local w = { n = n, v = v }
  local objs = NONE
  if ctx then
    if ctx.marked then w.m = true; w.f = ctx.fns; w.t = ctx.tabs end
    objs = ctx.objs
    release(ctx)
  end
  buf:reset()
  -- The first byte says whether decoding needs the FFI (int64 cdata and
  -- handles do; string.buffer cannot decode them in a state without it).
  buf:put(ctx and ctx.cdata and "F" or "P")
  buf:encode(w)
  return buf, objs
end

-- The rest of entry_check: convert the entry as encoding root whole
-- would (a walk that names the path), only to find what cannot cross.
function entry_error(k, v, root, label, index)
  looked = false
  local ctx = context(label)
  count_refs(v, ctx.refs, 1)
  ctx.index, ctx.depth, ctx.nest = index, 0, 1
  ctx.seen[root] = true
  push(ctx, k, false)
  local ok, r = pcall(conv, v, ctx)
  ctx.seen = {}
  release(ctx)
  if ok then return false end
  return nil, tostring(r)
end

local unmark

local function unmark_table(t, d)
  local kind = t[TAG]
  if kind ~= nil then
    if kind == "f" then
      return d.fns[t.i]
    elseif kind == "r" then
      return d.tabs[t.i]
    elseif kind == "m" then
      return require(t.n)
    elseif kind == "mf" then
      return t.n == "_G" and _G[t.k] or require(t.n)[t.k]
    end
    return require("ffipar.codec").unmark_cdata(t, d)
  end
  local fix
  for k, v in pairs(t) do
    local ck, cv = k, v
    if type(k) == "table" then ck = unmark(k, d) end
    if type(v) == "table" then cv = unmark(v, d) end
    if ck ~= k or cv ~= v then
      fix = fix or {}
      fix[#fix + 1] = { k, ck, cv }
    end
  end
  if fix then
    for i = 1, #fix do
      local f = fix[i]
      if f[1] ~= f[2] then t[f[1]] = nil end
      t[f[2]] = f[3]
    end
  end
  return t
end

function unmark(v, d)
  if type(v) == "table" then return unmark_table(v, d) end
  return v
end

-- Decode from a string, or from (pointer, length) of foreign memory.
-- string.buffer's set() references the data without copying.
-- `msg` is handed to codec for handles; `cache` = { fns = {}, size = 0 }
-- maps bytecode to a loaded function (a pool worker loads a task's function
-- once); it is emptied when it reaches CACHE_MAX functions. Returns
-- { n = count, ... }.
local CACHE_MAX = 256
local decode

-- A large message is decoded after a full collection, with the collector
-- stopped: LuaJIT does not grow its string table while the collector
-- sweeps strings, so a burst of new strings during that phase meets ever
-- longer hash chains (200k records took seconds to a minute, not 0.3 s).
-- After a full cycle the collector rests, and decoding makes no garbage.
local BIG = 2^20
M.BIG = BIG
function M.gc_pause()
  if not collectgarbage("isrunning") then return false end
  collectgarbage("collect")
  collectgarbage("stop")
  return true
end
local gc_pause = M.gc_pause

function M.decode(data, len, msg, cache)
  if (len or #data) < BIG or not gc_pause() then
    return decode(data, len, msg, cache)
  end
  local ok, r = pcall(decode, data, len, msg, cache)
  collectgarbage("restart")
  if not ok then error(r, 0) end
  return r
end

function decode(data, len, msg, cache)
  dbuf:set(data, len)
  if dbuf:get(1) == "F" then require "ffi" end
  local w = dbuf:decode()
  dbuf:reset()
  local v = w.v
  v.n = w.n
  if not w.m then return v end
  local d = { msg = msg, fns = {}, tabs = w.t or {} }
  local used = {}
  for i, e in ipairs(w.f) do
    local f = cache and not used[e.c] and cache.fns[e.c]
    if not f then
      f = assert(loadstring(e.c))
      if cache and not used[e.c] then
        if cache.size >= CACHE_MAX then cache.fns, cache.size = {}, 0 end
        cache.fns[e.c], cache.size = f, cache.size + 1
      end
    end
    used[e.c] = true
    d.fns[i] = f
  end
  for i = 1, #d.tabs do unmark_table(d.tabs[i], d) end   -- in place: identity kept
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
