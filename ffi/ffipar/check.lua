-- ffipar.check: the race check's strands and check mode.
--
-- A phase is one parallel call (or a par.phase); a strand is one piece of
-- it that may run at the same time as the others: a chunk of a parallel
-- call, a task submitted or a function spawned inside par.phase. A checked
-- array records, per slot, which strands of the phase wrote and read it,
-- so two strands touching one slot (at least one writing) are reported on
-- any schedule, even by a pool of one worker.
--
-- Check mode (par.check(true) or FFIPAR_CHECK=1) makes every par.array a
-- checked array, cuts parallel calls into chunks that depend on n only,
-- and reports a function of a phase that writes into a table it got as an
-- upvalue or argument, or assigns a global: in a worker those are copies,
-- so the write is lost to the caller and to the other workers.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local C = lib.C
lib.declare("shm")

local M = {}

-- (Locals: while a watch is on, this state's globals are moved aside.)
local next, rawset, rawequal, setmetatable, getmetatable = next, rawset, rawequal, setmetatable, getmetatable

-- This state's current strand as a mark, (phase << 32) | strand; 0 when
-- the code running is no strand (outside a phase, or the caller's own code
-- in par.phase). Checked arrays read it on every access.
local cur = ffi.new("uint64_t[1]")
M.cur = cur

---- the switch ----

local ENV = { ["1"] = true, ["true"] = true, on = true, yes = true,
  [""] = false, ["0"] = false, ["false"] = false, off = false, no = false }

-- Check mode, set once per process from FFIPAR_CHECK unless par.check
-- chose already (a worker sees the main thread's choice).
function M.on()
  local v = C.ffipar_check_get()
  if v < 0 then
    local s = os.getenv("FFIPAR_CHECK") or ""
    local on = ENV[s:lower()]
    if on == nil then
      error("ffipar: FFIPAR_CHECK must be 1 or 0, got '" .. s .. "'", 0)
    end
    C.ffipar_check_set(on and 1 or 0)
    return on
  end
  return v == 1
end

--- par.check(true | false): check mode on or off for the whole process
-- (arrays made before keep their kind); par.check() tells whether it is on.
function M.check(on)
  if type(on) == "nil" then return M.on() end   -- (a NULL cdata == nil)
  if type(on) ~= "boolean" then
    lib.argerror("ffipar.check", "argument #1 must be a boolean or nil, got " .. type(on))
  end
  C.ffipar_check_set(on and 1 or 0)
  return on
end

-- Whether phases number their strands: in check mode, or once any checked
-- array was made (until then nothing reads the strands: a program that
-- never makes one pays nothing for them).
function M.active()
  return C.ffipar_check_arrays(0) ~= 0 or M.on()
end

-- In check mode a parallel call is cut into this many chunks (fewer when
-- n is smaller), whatever the pool's size: a report names the same chunks
-- on every run.
M.CHUNKS = 64

---- numbering strands ----

-- "file:line" of the function `level` levels above the caller.
-- "file:line" of the function `level` levels above the caller (the first
-- Lua function from there: a call made through pcall names pcall's caller).
function M.site(level)
  level = level + 1
  local info = debug.getinfo(level, "Sl")
  while info and info.what == "C" do
    level = level + 1
    info = debug.getinfo(level, "Sl")
  end
  if not info then return "?" end
  return ("%s:%d"):format(info.short_src, info.currentline or 0)
end

local function mark_of(base)
  return ffi.new("int64_t", C.ffipar_phase_current()) * 4294967296LL + base
end

-- Number `count` chunk strands of the current phase; returns the mark of
-- the first (the others follow it), or 0 outside a phase.
function M.chunk_strands(count, chunk, n, what)
  local base = C.ffipar_strand_new(count, chunk, n, what, #what)
  if base == 0 then return 0 end
  return mark_of(base)
end

local tasks = { phase = 0 }   -- tasks and spawns numbered so far in this state's phase

-- The mark of a new task or spawned function inside the current phase, or
-- nil outside one. kind: "task" or "spawned function".
function M.task_strand(kind, fname, level)
  local phase = C.ffipar_phase_current()
  if phase == 0 or not M.active() then return nil end
  if tasks.phase ~= phase then tasks = { phase = phase } end
  tasks[kind] = (tasks[kind] or 0) + 1
  local what = ("%s %d (%s at %s)"):format(kind, tasks[kind], fname, M.site(level + 1))
  local base = C.ffipar_strand_new(1, 0, 0, what, #what)
  if base == 0 then return nil end
  return mark_of(base)
end

---- naming strands in messages ----

local buf = ffi.new("char[256]")
local kp, chunkp, np = ffi.new("int64_t[1]"), ffi.new("int64_t[1]"), ffi.new("int64_t[1]")

-- A strand of the phase of `me`: its own name and what it is part of
-- ("chunk [0, 64)", "pool:parallel_for at x.lua:3"), or (name, nil).
local function strand_name(me, strand)
  local phase = tonumber(me / 4294967296ULL)
  if C.ffipar_strand_describe(phase, strand, buf, 256, kp, chunkp, np) ~= 0 then
    return "strand " .. tostring(strand), nil
  end
  local what = ffi.string(buf)
  if chunkp[0] == 0 then return what, nil end
  local lo = tonumber(kp[0] * chunkp[0])
  return ("chunk [%d, %d)"):format(lo, math.min(lo + tonumber(chunkp[0]), tonumber(np[0]))), what
end
M.strand_name = strand_name

-- The text of a race between the strand `me` (doing `mine`: "read" or
-- "written") and the strand `other` (> 0: it wrote; < 0: it read), the
-- lower strand first.
function M.race_message(array, i, other, mine, me)
  other = tonumber(other)
  local theirs = other > 0 and "written" or "read"
  local a = { strand = math.abs(other), kind = theirs }
  local b = { strand = tonumber(me % 4294967296ULL), kind = mine }
  if b.strand < a.strand then a, b = b, a end
  local an, aw = strand_name(me, a.strand)
  local bn, bw = strand_name(me, b.strand)
  local second = a.kind == b.kind and bn or (b.kind .. " by " .. bn)
  local pair
  if aw and aw == bw then
    pair = ("%s by %s and %s of %s"):format(a.kind, an, second, aw)
  else
    pair = ("%s by %s%s and %s%s"):format(a.kind, an, aw and " of " .. aw or "",
      second, bw and " of " .. bw or "")
  end
  return ("ffipar: race on checked array '%s' index %d: %s"):format(array, i, pair)
end

---- Lua-side writes that a worker would lose ----

local function where(f)
  local info = debug.getinfo(f, "S")
  return ("%s:%d"):format(info.short_src, info.linedefined)
end

local function key_text(k)
  if type(k) == "string" then return ("'%s'"):format(k) end
  return tostring(k)
end

-- Every table reachable from v (through tables and the upvalues of Lua
-- functions), but not modules (they are re-required, not copied), with a
-- copy of its contents. `path` says how v was reached.
local function collect(v, path, seen, out, modules)
  if type(v) == "table" then
    if seen[v] or modules[v] then return end
    seen[v] = true
    local snap = {}
    for k, x in next, v do snap[k] = x end
    out[#out + 1] = { t = v, snap = snap, path = path }
    for k, x in next, v do
      collect(x, ("field %s of %s"):format(key_text(k), path), seen, out, modules)
    end
  elseif type(v) == "function" then
    if seen[v] or modules[v] or debug.getinfo(v, "S").what == "C" then return end
    seen[v] = true
    for u = 1, 255 do
      local name, x = debug.getupvalue(v, u)
      if name == nil then break end
      collect(x, ("upvalue '%s' of the function at %s"):format(name, where(v)), seen, out, modules)
    end
  end
end

-- The first change to a collected table: (path, key), or nil.
local function changed(out)
  for _, e in ipairs(out) do
    local t, snap = e.t, e.snap
    for k, x in next, t do
      local y = snap[k]
      if not rawequal(x, y) and not (x ~= x and y ~= y) then return e.path, k end
    end
    for k in next, snap do
      if rawget(t, k) == nil then return e.path, k end
    end
  end
end

-- A watch over what the strand functions of a phase may write: the tables
-- reachable from fn and its arguments, and the globals of fn's state.
local watch = nil

local function start_watch(fn, first, ...)
  local modules = {}
  for _, m in pairs(package.loaded) do modules[m] = true end
  local env = getfenv(fn)
  modules[env] = true
  local seen, out = {}, {}
  collect(fn, "the function", seen, out, modules)
  for k = 1, select("#", ...) do
    collect((select(k, ...)), "argument #" .. (first + k - 1), seen, out, modules)
  end
  local w = { fn = fn, tables = out, env = env, shadow = {}, assigned = nil, seen = seen,
    modules = modules }
  -- The globals move to a shadow table for the watch, so that every
  -- assignment, to a new global or an existing one, goes through
  -- __newindex (whatever earlier tasks left in this worker's globals).
  local shadow = w.shadow
  for k, x in next, env do shadow[k] = x end
  for k in next, shadow do rawset(env, k, nil) end
  local old = getmetatable(env)
  w.old_mt = old
  local index = shadow
  if old and old.__index then
    local oldindex = old.__index
    index = function(t, k)
      local x = shadow[k]
      if x ~= nil then return x end
      if type(oldindex) == "function" then return oldindex(t, k) end
      return oldindex[k]
    end
  end
  setmetatable(env, {
    __index = index,
    __newindex = function(_, k, x)
      if not w.assigned then
        local info = debug.getinfo(2, "Sl")
        w.assigned = { k = k, at = info and ("%s:%d"):format(info.short_src, info.currentline) or "?" }
      end
      shadow[k] = x
    end,
  })
  watch = w
  return w
end

--- True inside a watched strand (check mode).
function M.watching()
  return watch ~= nil
end

--- In a watched strand: watch table t too (a worker's copy of a par.share
-- snapshot, met through sh:get() or pool:best), named by `path` in a
-- report. A no-op outside a watch.
function M.watch_table(t, path)
  local w = watch
  if w then collect(t, path, w.seen, w.tables, w.modules) end
end

local function stop_watch()
  local w = watch
  if not w then return end
  watch = nil
  setmetatable(w.env, w.old_mt)
  for k, x in next, w.shadow do rawset(w.env, k, x) end
  return w
end

-- After the strands: the report of a lost write, or nil. `what` names the
-- function ("pool:parallel_for's function", "task 2 (pool:submit at x:3)").
local function report(w, what)
  local lost = "; each worker has its own copy, so the write is lost to the caller and to the other workers"
  local g = w.assigned
  if g then
    return ("ffipar.check: %s (the function at %s) assigned the global %s%s%s"):format(
      what, where(w.fn), key_text(g.k), " at " .. g.at,
      "; globals are per worker, so the write is lost to the caller and to the other workers")
  end
  local path, k = changed(w.tables)
  if path then
    return ("ffipar.check: %s (the function at %s) wrote key %s of the table in %s%s"):format(
      what, where(w.fn), key_text(k), path, lost)
  end
end

local function finish(w, what_of, ...)
  stop_watch()
  local msg = report(w, what_of())
  if msg then error(msg, 0) end
  return ...
end

---- running strands in a worker ----

-- A worker runs a parallel call's runner under a watch (check mode). The
-- arguments are as the pool passes them to runner; `fname` is the call.
function M.run_parallel(runner, job, n, chunk, fn, ...)
  local w = start_watch(fn, 3, ...)
  return finish(w, function()
    local p = job:ptr()
    local _, what = strand_name(p[2], tonumber(p[2] % 4294967296ULL))
    return (what or "the parallel call") .. ": its function"
  end, runner(job, n, chunk, fn, ...))
end

-- A worker runs a task or spawned function of a phase as strand `me`.
function M.run_task(me, fn, ...)
  cur[0] = me
  if not M.on() then return fn(...) end
  local w = start_watch(fn, 1, ...)
  return finish(w, function()
    return (strand_name(me, tonumber(me % 4294967296ULL)))
  end, fn(...))
end

-- What a task or spawned function of a phase is sent as: no upvalues, so
-- it crosses as it is; fn is the caller's argument #1.
function M.task_runner(me, fn, ...)
  return require("ffipar.check").run_task(me, fn, ...)
end

-- Before each task in a pool worker: no strand, no watch (a task that
-- failed left them).
function M.new_task()
  cur[0] = 0
  stop_watch()
end

return M
