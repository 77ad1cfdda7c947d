-- ffipar.pool: long-lived workers. A pool's workers keep their LuaJIT
-- states across tasks, so a task costs a queue round trip, not a new state.
--   local pool = par.pool()                       -- par.cpus() workers
--   local f = pool:submit(fn, ...); local ok, r = f:join()
--   pool:parallel_for(n, function(lo, hi, ...) ... end, ...)
--   local best, at = pool:argmax(n, score, ...)
--   local sum = pool:map_reduce(n, map, reduce, ...)
--   pool:close()
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local shm = require "ffipar.shm"
local check = require "ffipar.check"
local tnew = require "table.new"
require "ffipar.thread"               -- tasks are thread objects: join, status, cancel
local C = lib.C
lib.declare("thread")
lib.declare("pool")
lib.declare("atomic")

local M = {}

local pool = {}
local out = ffi.new("ffipar_pool *[1]")
local tout = ffi.new("ffipar_thread *[1]")

-- A pool handle: the C pool (one reference) and its size. It crosses into
-- workers and through channels like the other handles. When only the
-- pool's own workers still hold it, the shim closes it (a forgotten pool
-- lets its workers go once its queue is empty).
local pool_ct = ffi.typeof("struct { ffipar_pool *c; int32_t n; }")
ffi.metatype(pool_ct, {
  __index = pool,
  __gc = function(h) C.ffipar_obj_release(h.c) end,
  __tostring = function(h)
    return ("ffipar.pool: %s (%d workers%s)"):format(lib.addr(h.c), h.n,
      C.ffipar_pool_closed(h.c) ~= 0 and ", closed" or "")
  end,
})
codec.register_ctype(pool_ct, "pool")

local function is_pool(v)
  return ffi.istype(pool_ct, v)
end
M.is_pool = is_pool          -- for ffipar.uv

--- A pool of n workers (default par.cpus()). opts.init: a function run once
-- in each worker before any task; an error in it is raised here.
function M.pool(n, opts)
  if type(n) == "nil" then n = C.ffipar_cpus() end
  lib.count(n, "ffipar.pool", "worker count", 1, 1024, 2)
  if type(opts) ~= "nil" and type(opts) ~= "table" then
    lib.argerror("ffipar.pool", "options must be a table or nil, got " .. type(opts))
  end
  local init = opts and opts.init
  if type(init) ~= "nil" and type(init) ~= "function" then
    lib.argerror("ffipar.pool", "options.init must be a function, got " .. type(init))
  end
  local rc = C.ffipar_pool_new(out, package.path, package.cpath)
  if rc ~= 0 then error("ffipar.pool: " .. select(2, lib.fail(rc)), 2) end
  local p = out[0]
  local self = pool_ct(p, n)
  require("ffipar.thread").cache_modules()
  local inits = {}
  for i = 1, n do
    local msg = init and codec.encode("ffipar.pool", "options.init", 1, 2, init) or nil
    rc = C.ffipar_pool_start(p, msg, tout)
    if rc ~= 0 then
      self:close()
      error("ffipar.pool: cannot start worker " .. i .. ": " .. select(2, lib.fail(rc)), 2)
    end
    if init then inits[i] = lib.own(tout[0]) end
  end
  for i = 1, #inits do
    local ok, err = inits[i]:join()
    if not ok then
      self:close()
      error("ffipar.pool: init failed in a worker: " .. tostring(err), 2)
    end
  end
  return self
end

-- level: as for lib.count (2 = the caller of the function calling this).
local function check_open(self, fname, level)
  if not is_pool(self) then
    lib.argerror(fname, "expected a par.pool as self (use pool:method()), got " .. lib.show(self), level + 1)
  end
  if C.ffipar_pool_closed(self.c) ~= 0 then lib.argerror(fname, "the pool is closed", level + 1) end
end

--- Run fn(...) on a pool worker; returns a future: f:join([timeout]) gives
-- true, results... | false, err with traceback | nil, "timeout" | nil, "cancelled".
function pool:submit(fn, ...)
  check_open(self, "pool:submit", 2)
  if type(fn) ~= "function" then
    lib.argerror("pool:submit", "argument #1 must be a function, got " .. type(fn))
  end
  local me, msg = check.task_strand("task", "pool:submit", 2), nil   -- a strand inside par.phase
  if me then
    msg = codec.encode("pool:submit", "argument", -1, 2, check.task_runner, me, fn, ...)
  else
    msg = codec.encode("pool:submit", "argument", 1, 2, fn, ...)
  end
  local rc = C.ffipar_pool_submit(self.c, msg, tout)
  if rc ~= 0 then error("pool:submit: " .. select(2, lib.fail(rc)), 2) end
  return lib.own(tout[0])
end

--- How many workers the pool has.
function pool:size()
  if not is_pool(self) then check_open(self, "pool:size", 2) end
  return self.n
end

--- Stop taking tasks, let queued and running ones finish, wait for the
-- workers to exit (not from one of the pool's own tasks, which would wait
-- for itself: that returns at once). Idempotent.
function pool:close()
  if not is_pool(self) then check_open(self, "pool:close", 2) end
  C.ffipar_pool_close(self.c)
  if C.ffipar_pool_mine(self.c) == 0 then C.ffipar_pool_wait(self.c, -1) end
  return true
end

M._methods = { pool = pool }

function M.to_wire(h) return h.c, { n = h.n } end
function M.from_wire(obj, params)
  C.ffipar_obj_retain(obj)
  return pool_ct(ffi.cast("ffipar_pool *", obj), params.n)
end

---- parallel loops ----

-- These run in the workers. `job` is a shared int64_t[4] (next index,
-- abort flag, the race check's mark of the first chunk's strand or 0, and
-- the parts done and the seats taken of a one-call pool:best).
-- body(lo, hi) runs for each chunk [lo, hi) this worker
-- claims; chunks are claimed dynamically, so uneven work still ends
-- together, and each worker's chunks come in increasing order. Each chunk
-- is a strand of the race check (ffipar.check). An error
-- stops the other workers from claiming more and is raised again, with the
-- worker's traceback.
-- This worker's part of a parallel call over job pointer p: loop(cur,
-- first), with cur the race check's strand mark (nil outside a checked
-- phase) and first the mark of the call's first chunk; the mark is put
-- back after. An error stops the other workers from claiming more and is
-- raised again, with the worker's traceback.
local function worker_part(p, loop)
  local C = require("ffipar.lib").C
  require("ffipar.lib").declare("pool")
  local first = p[2]
  local cur = first ~= 0 and require("ffipar.check").cur or nil
  local outer = cur and cur[0]
  local ok, err = xpcall(loop, debug.traceback, cur, first)
  if cur then cur[0] = outer end
  if not ok then
    C.ffipar_pool_abort(p)
    error(err, 0)
  end
end

local function claim_chunks(job, n, chunk, body)
  local C = require("ffipar.lib").C
  require("ffipar.lib").declare("pool")
  local p = job:ptr()
  worker_part(p, function(cur, first)
    while true do
      local lo = C.ffipar_pool_claim(p, chunk, n)
      if lo < 0 then return end
      if cur then cur[0] = first + lo / chunk end
      body(lo, math.min(lo + chunk, n))
    end
  end)
end

-- fn and up to four extra arguments as locals, so that a loop calling fn has
-- no vararg in it (it would not compile: NYI: bytecode 71); with more, a
-- closure passes them (slower).
local function fixed_args(fn, ...)
  if select("#", ...) <= 4 then return fn, ... end
  local args, f = { n = select("#", ...), ... }, fn
  return function(i) return f(i, unpack(args, 1, args.n)) end
end

-- In check mode the runner runs under a watch for lost Lua-side writes.
local function watched(runner, job, n, chunk, fn, ...)
  return require("ffipar.check").run_parallel(runner, job, n, chunk, fn, ...)
end

local function run_chunks(job, n, chunk, fn, ...)
  local args = { n = select("#", ...), ... }
  claim_chunks(job, n, chunk, function(lo, hi) fn(lo, hi, unpack(args, 1, args.n)) end)
end

-- The best score(i, ...) over [lo, hi] from (best, at). The inner loop is
-- the common case (no new best), so the JIT compiles it as the trace's loop
-- and a new best is the side exit; one loop with an `if s > best` would be
-- recorded on the first iterations, where every score is a new best, and
-- then leave and re-enter its trace on every later index.
local function argmax_range(lo, hi, best, at, score, a1, a2, a3, a4)
  local i = lo
  while i <= hi do
    local s = score(i, a1, a2, a3, a4)
    while not (s > best) do
      i = i + 1
      if i > hi then return best, at end
      s = score(i, a1, a2, a3, a4)
    end
    best, at = s, i
    i = i + 1
  end
  return best, at
end

local function argmax_chunks(job, n, chunk, score, ...)
  local a1, a2, a3, a4
  score, a1, a2, a3, a4 = fixed_args(score, ...)
  local best, at = -math.huge, nil
  claim_chunks(job, n, chunk, function(lo, hi)
    best, at = argmax_range(lo, hi - 1, best, at, score, a1, a2, a3, a4)
  end)
  return best, at
end

-- Each chunk folded in index order; returns the count, the chunks' first
-- indexes and their values.
local function map_reduce_chunks(job, n, chunk, map, reduce, ...)
  local a1, a2, a3, a4
  map, a1, a2, a3, a4 = fixed_args(map, ...)
  local m, los, vals = 0, {}, {}
  claim_chunks(job, n, chunk, function(lo, hi)
    local acc = map(lo, a1, a2, a3, a4)
    for i = lo + 1, hi - 1 do acc = reduce(acc, map(i, a1, a2, a3, a4)) end
    m = m + 1
    los[m], vals[m] = lo, acc
  end)
  return m, los, vals
end

-- The entry of keys/vals in [lo, hi] with the best score(key, value, ...)
-- from (best, at), as argmax_range.
local function best_range(lo, hi, best, at, score, keys, vals, a1, a2, a3, a4)
  local i = lo
  while i <= hi do
    local s = score(keys[i], vals[i], a1, a2, a3, a4)
    while not (s > best) do
      i = i + 1
      if i > hi then return best, at end
      s = score(keys[i], vals[i], a1, a2, a3, a4)
    end
    best, at = s, i
    i = i + 1
  end
  return best, at
end

-- Over the entries of snapshot h, in the sharing state's pairs order;
-- returns the best score and its position (from 1). The arguments end
-- with the caller's nx extra ones, then h, once, flags, nx (arguments, not
-- upvalues: a pool worker keeps the task function it loaded). For a
-- snapshot in chunks, [0, n) are its chunks: each worker first claims the
-- chunks its state has decoded (flags: one int64 a chunk, set by the claim),
-- then the others from the last one down, decoding them; so repeated calls
-- decode nothing, and the first decodes each chunk in one worker only.
-- With once == "parts", h is instead the address of the parts of a
-- one-call pool:best (see below) and flags the number of workers that take
-- part (a seat each, job[4]; the others return at once).
local GC_REST = 256 * 1024
local function best_chunks(job, n, chunk, score, ...)
  local m = select("#", ...)
  local nx = select(m, ...)
  local h, once, flags = select(nx + 1, ...)
  local share = require "ffipar.share"
  local a1, a2, a3, a4
  if nx <= 4 then
    a1, a2, a3, a4 = ...
    if nx < 4 then a4 = nil end
    if nx < 3 then a3 = nil end
    if nx < 2 then a2 = nil end
    if nx < 1 then a1 = nil end
  else
    local args, f = { n = nx, ... }, score
    score = function(k, v) return f(k, v, unpack(args, 1, args.n)) end
  end
  local best, at = -math.huge, nil
  if once == "parts" or once == "build" then
    -- The parts of a one-call pool:best: claimed in order, each waited for
    -- (nil once the caller ended them), decoded, scored and counted done
    -- (job[3]: the caller publishes more while few are in flight). Parts
    -- come in increasing order, so the first best stays on ties.
    local C = require("ffipar.lib").C
    require("ffipar.lib").declare("atomic")
    local part, build = share.part, once == "build"
    local p, bi = job:ptr(), nil
    h = share.parts_at(h)        -- its address: the caller holds it until we are done
    if C.ffipar_atomics_add_i64(p + 4, 1) >= flags then return best, nil, nil end   -- a seat each
    -- The collector rests while the parts are decoded and scored (up to
    -- GC_REST KiB of them): each cycle would mark all this state keeps (a
    -- shared table decoded here before: hundreds of thousands of tables)
    -- to free a few parts. The idle worker collects them (pool.c); calls
    -- that come back to back leave it no idle time, so past GC_REST KiB of
    -- heap the collector runs during the call as anywhere else.
    local heap = collectgarbage("count")
    local gc = collectgarbage("isrunning") and heap < GC_REST
    local rest = heap + GC_REST
    if gc then collectgarbage("stop") end
    local ok, err = pcall(worker_part, p, function(cur, first)
      while true do
        local i = C.ffipar_pool_claim(p, 1, n)
        if i < 0 then return end
        local keys, vals, g0 = part(h, i)
        if keys == nil or C.ffipar_atomics_load_i64(p + 1) ~= 0 then return end
        -- making a lazy snapshot: this state keeps the part as the snapshot's
        if build then share.keep_part(h, n, i, keys, vals, g0) end
        local m, s, j = #keys, nil, nil
        if not cur then
          s, j = best_range(1, m, -math.huge, nil, score, keys, vals, a1, a2, a3, a4)
        else
          -- strands: the entries numbered [k * chunk + 1, (k + 1) * chunk], whoever scores them
          s = -math.huge
          local lo = 1
          while lo <= m do
            local k = math.floor((g0 + lo - 2) / chunk)
            local hi = math.min(m, (k + 1) * chunk - g0 + 1)
            cur[0] = first + k
            s, j = best_range(lo, hi, s, j, score, keys, vals, a1, a2, a3, a4)
            lo = hi + 1
          end
        end
        if j ~= nil and s > best then best, bi, at = s, i, j end
        C.ffipar_atomics_add_i64(p + 3, 1)
        if gc and collectgarbage("count") > rest then collectgarbage("restart"); gc = false end
      end
    end)
    if gc then collectgarbage("restart") end
    if not ok then error(err, 0) end
    return best, bi, at
  end
  local e = share.view(h, once)
  -- In check mode the values a chunk scores are watched: they are this
  -- worker's copy, so a write to one is lost (ffipar.check reports it).
  local check = require "ffipar.check"
  local watch = check.watching() and function(keys, vals, lo, hi)
    for i = lo, hi do
      if type(vals[i]) == "table" then
        local k = keys[i]
        check.watch_table(vals[i], ("the value of entry %s of the shared table"):format(
          type(k) == "string" and ("%q"):format(k) or tostring(k)))
      end
    end
  end
  if not e.p then
    local keys, vals = share.entries_of(e)
    claim_chunks(job, n, chunk, function(lo, hi)
      if watch then watch(keys, vals, lo + 1, hi) end
      best, at = best_range(lo + 1, hi, best, at, score, keys, vals, a1, a2, a3, a4)
    end)
    return best, at
  end
  local C = require("ffipar.lib").C
  require("ffipar.lib").declare("atomic")
  require("ffipar.lib").declare("pool")
  local keys, vals, chunk_of = e.keys, e.vals, share.chunk
  local p, fp = job:ptr(), flags:ptr()
  worker_part(p, function(cur, first)
    local function run(j)
      if C.ffipar_atomics_exchange_i64(fp + j, 1) ~= 0 then return end
      if cur then cur[0] = first + math.floor(j / chunk) end
      local lo, hi = chunk_of(e, j)
      if watch then watch(keys, vals, lo, hi) end
      local s, i = best_range(lo, hi, -math.huge, nil, score, keys, vals, a1, a2, a3, a4)
      -- chunks come in any order: among equal scores the first position wins
      if i ~= nil and (s > best or (s == best and i < at)) then best, at = s, i end
    end
    local mine = e.order
    for i = 1, #mine do
      if C.ffipar_atomics_load_i64(p + 1) ~= 0 then return end
      run(mine[i])
    end
    while true do
      local i = C.ffipar_pool_claim(p, 1, n)
      if i < 0 then return end
      run(n - 1 - i)
    end
  end)
  return best, at
end

-- Run `runner` on every worker over [0, n) as one parallel phase; returns
-- the futures' results. The first error is raised (with the worker's
-- traceback) after every worker has stopped. Errors about the arguments
-- name them as the caller's (fn is #2) at the caller's line. A caller that
-- is a cancelled worker stops the chunks, waits until they have stopped
-- and gets nil. mine (or nil): the caller's own part, mine(job, chunk,
-- failed) (failed: the tasks could not all be submitted), run once
-- the workers have their tasks; it returns nil, or a message for the
-- caller's line (raised after the workers stopped); an error it raises
-- (with the traceback it added) stops the workers and is raised the same
-- way.
local function run_parallel(self, fname, n, fn, runner, mine, ...)
  check_open(self, fname, 3)
  if C.ffipar_pool_mine(self.c) ~= 0 then
    lib.argerror(fname, "called from a task of the same pool, whose chunks would wait for "
      .. "this worker; use another pool", 3)
  end
  lib.count(n, fname, "n", 0, nil, 3)
  if type(fn) ~= "function" then
    lib.argerror(fname, "argument #2 must be a function, got " .. type(fn), 3)
  end
  if n == 0 then return {} end
  local job = shm.array("int64_t", 5, { checked = false })
  -- In check mode the chunks depend on n only, so a race report names the
  -- same chunks on every run and pool size, and the runner runs under a
  -- watch for lost Lua-side writes.
  local checking = check.on()
  local chunk = checking and math.ceil(n / check.CHUNKS) or math.max(1, math.ceil(n / (self.n * 16)))
  local site = check.active() and fname .. " at " .. check.site(3)
  -- One message a worker (a message is consumed by its task). The first
  -- checks that every value can cross; the others can only run out of memory.
  local msgs = {}
  if checking then
    msgs[1] = codec.encode(fname, "argument", -3, 3, watched, runner, job, n, chunk, fn, ...)
  else
    msgs[1] = codec.encode(fname, "argument", -2, 3, runner, job, n, chunk, fn, ...)
  end
  for i = 2, self.n do
    local ok, msg
    if checking then
      ok, msg = pcall(codec.encode, fname, "argument", -3, 1, watched, runner, job, n, chunk, fn, ...)
    else
      ok, msg = pcall(codec.encode, fname, "argument", -2, 1, runner, job, n, chunk, fn, ...)
    end
    if not ok then
      for j = 1, #msgs do C.ffipar_msg_free(msgs[j]) end
      error(msg, 3)
    end
    msgs[i] = msg
  end
  local futures, results, first_err, cancelled, mine_err = {}, {}, nil, false, nil
  shm.phase(function()
    if site then job:ptr()[2] = check.chunk_strands(math.ceil(n / chunk), chunk, n, site) end
    for i = 1, self.n do
      local rc = C.ffipar_pool_submit(self.c, msgs[i], tout)   -- consumes msgs[i]
      if rc ~= 0 then
        C.ffipar_pool_abort(job:ptr())
        first_err = fname .. ": " .. select(2, lib.fail(rc))
        for j = i + 1, self.n do C.ffipar_msg_free(msgs[j]) end
        break
      end
      futures[i] = lib.own(tout[0])
    end
    if mine then
      local ok, r = pcall(mine, job, chunk, first_err ~= nil)
      if not ok or r then
        C.ffipar_pool_abort(job:ptr())
        mine_err = r
        if ok then mine_err = fname .. ": " .. r end
      end
    end
    for i = 1, #futures do
      local r = { futures[i]:join() }
      if r[1] == nil and C.ffipar_self_cancelled() ~= 0 then
        cancelled = true
        C.ffipar_pool_abort(job:ptr())
        for j = i, #futures do futures[j]:cancel() end
        for j = i, #futures do C.ffipar_thread_wait(futures[j]) end
        break
      end
      if r[1] then results[#results + 1] = r
      elseif not first_err then first_err = r[2] end
    end
  end)
  if cancelled then return nil end
  if mine_err or first_err then error(mine_err or first_err, 3) end
  return results
end

--- fn(lo, hi, ...) over chunks [lo, hi) covering [0, n), on every worker.
function pool:parallel_for(n, fn, ...)
  if not run_parallel(self, "pool:parallel_for", n, fn, run_chunks, nil, ...) then
    return nil, "cancelled"
  end
  return true
end

--- The best score(i, ...) for i in [0, n) and its index (the lowest index
-- among equal best scores): the serial loop's answer. nil when n == 0 or no
-- score is above -math.huge.
function pool:argmax(n, score, ...)
  local results = run_parallel(self, "pool:argmax", n, score, argmax_chunks, nil, ...)
  if not results then return nil, "cancelled" end
  local best, at = -math.huge, nil
  for _, r in ipairs(results) do
    local s, i = r[2], r[3]
    if i ~= nil and (s > best or (s == best and (at == nil or i < at))) then best, at = s, i end
  end
  if at == nil then return nil end
  return best, at
end

---- the one-call pool:best: the caller takes part ----
--
-- pool:best(t, score) on a table: the caller is blocked in the call anyway
-- and nothing else can change t meanwhile, so it walks t once, in pairs
-- order, numbering the entries. While few parts are in flight (published,
-- not yet scored) it checks the next entries and publishes them to the
-- workers as a part (a chunk of entries); otherwise it checks
-- and scores entries itself, straight from t (no copy, no decode). An entry
-- that crosses only converted (a function, a handle, a shared sub-table)
-- ends the part being filled and the caller scores it. Ties go to the
-- lowest number: the serial loop's entry. Every entry is checked, whoever
-- scores it: the first one in pairs order that cannot cross is the error,
-- even after a score failed (the rest is then only checked).
-- A part holds PART_MIN..PART_MAX entries (about n / 128): a worker's part
-- must outlast the round trip of a futex wake, and a small table must not
-- go to the workers whole before the caller scores anything. The caller
-- looks at the parts done every LOOK entries it scores.
local PART_MIN, PART_MAX, LOOK = 32, 256, 16
-- M.best_cores: the cores for workers (default: par.cpus() - 1); for tests.
-- A worker helps only on a core of its own: sharing the caller's, a sent
-- entry costs the two of them 3.25 us (check, encode, decode, score)
-- instead of the caller's 1.65 (check, score). So the caller watches the
-- CPU it gets while a worker is busy: below SHARE_MIN of WINDOW seconds,
-- it sends nothing for BACKOFF seconds, then tries again.
local WINDOW, SHARE_MIN, BACKOFF = 0.01, 0.75, 0.04

-- st: the walk's state, kept across an error: g (the number of the last
-- entry checked), the caller's best (s, k, v, g), parts (each { keys,
-- vals, g0 }, g0 + i - 1 the number of keys[i]), err (an entry that cannot
-- cross). ks, vs: t's n entries in pairs order. Returns when they are
-- walked, or stopped (the workers aborted).
local function caller_walk(st, t, ks, vs, n, h, p, cap, size, ahead, chunk, score, a1, a2, a3, a4)
  local C = lib.C
  local first = p[2]                           -- strands (see best_chunks), or 0
  local cur = first ~= 0 and check.cur or nil
  local share = require "ffipar.share"
  local check_entry = require("ffipar.wire").entry_check
  local b = require("string.buffer").new()
  local parts, nparts = st.parts, 0
  local best, bk, bv, bg = -math.huge, nil, nil, nil
  local g, look = 0, 0
  local keys, vals, m, g0 = nil, nil, 0, 0     -- the part being filled
  -- Making a lazy snapshot (st.own): the entries the caller scores are
  -- encoded too, as parts of their own, in runs of up to `size`.
  local own, okeys, ovals, om, og0 = st.own, nil, nil, 0, 0
  local function own_end()
    own[#own + 1] = { share.encode_part(b, okeys, ovals, og0), og0, om }
    okeys, om = nil, 0
  end
  local function publish()
    nparts = nparts + 1
    parts[nparts] = { keys, vals, g0 }
    share.put_part(h, b, keys, vals, g0)
    keys, m = nil, 0
  end
  local w_wall, w_cpu, w_busy, paused = C.ffipar_now(), C.ffipar_cpu_now(), false, 0
  local function hungry()
    if C.ffipar_atomics_load_i64(p + 1) ~= 0 or C.ffipar_self_cancelled() ~= 0 then return nil end
    local busy = nparts - C.ffipar_atomics_load_i64(p + 3)     -- parts in flight
    local now = C.ffipar_now()
    if now - w_wall >= WINDOW then
      local cpu = C.ffipar_cpu_now()
      if w_busy and busy > 0 and (cpu - w_cpu) < SHARE_MIN * (now - w_wall) then paused = now + BACKOFF end
      w_wall, w_cpu, w_busy = now, cpu, busy > 0
    end
    return nparts < cap and busy < ahead and now >= paused
  end
  local filling = hungry()
  if filling == nil then return end
  for i = 1, n do
    local k, v = ks[i], vs[i]
    local plain, err = check_entry(k, v, t, "argument", 1, not (filling or own))
    g = i
    st.g = g
    if plain == nil then st.err = err; break end
    if filling and plain then
      if om > 0 then own_end() end
      if m == 0 then keys, vals, g0 = {}, {}, g end
      m = m + 1
      keys[m], vals[m] = k, v
      if m == size then
        publish()
        filling = hungry()
        if filling == nil then break end
      end
    else
      if m > 0 then publish() end
      if own and not plain then own, okeys, om = nil, nil, 0 end   -- not in parts: made whole after the call
      if own then
        if om == 0 then okeys, ovals, og0 = {}, {}, g end
        om = om + 1
        okeys[om], ovals[om] = k, v
        if om == size then own_end() end
      end
      filling = false
      if cur then cur[0] = first + math.floor((g - 1) / chunk) end
      local s = score(k, v, a1, a2, a3, a4)
      if s > best then best, bk, bv, bg = s, k, v, g end
      look = look + 1
      if look == LOOK then
        look = 0
        st.s, st.bk, st.bv, st.bg = best, bk, bv, bg
        filling = hungry()
        if filling == nil then break end
      end
    end
  end
  if m > 0 then publish() end
  if own and om > 0 then own_end() end
  st.own_whole = own ~= nil and g == n
  st.s, st.bk, st.bv, st.bg = best, bk, bv, bg
  b:free()
end

-- The entries after number st.g only checked, for the first one that
-- cannot cross.
local function check_rest(st, t, ks, vs, n)
  local check_entry = require("ffipar.wire").entry_check
  for i = st.g + 1, n do
    local plain, err = check_entry(ks[i], vs[i], t, "argument", 1, true)
    if plain == nil then st.err = err; return end
  end
end

-- Seal lazy snapshot h, made by the one call that just walked t (ks, vs:
-- its n entries in pairs order): the parts the workers scored are there
-- (each worker keeps those it decoded); the entries the caller scored
-- itself are encoded now, as more parts of up to `size` entries. Encoded
-- after their scores: a score must not change its arguments (check mode
-- reports one that does).
local function make_in_parts(h, ks, vs, n, parts, own)
  local share = require "ffipar.share"
  local g0s, ms, more = {}, {}, {}
  for i, part in ipairs(parts) do g0s[i], ms[i] = part[3], #part[1] end
  for i, o in ipairs(own) do
    more[i] = o[1]
    g0s[#g0s + 1], ms[#ms + 1] = o[2], o[3]
  end
  share.seal(h, more, { n = n, g0s = g0s, ms = ms })
  share.made(h, ks, vs, #g0s)
end

-- An error that run_parallel raised at its caller's line, under a pcall
-- in best_one_call: raised again at best_one_call's caller's line (pool:best
-- tail-calls it).
local SELF_SRC = debug.getinfo(1, "S").short_src:gsub("%p", "%%%0")
local function reraise(err)
  local body = type(err) == "string" and err:match("^" .. SELF_SRC .. ":%d+: (.*)$")
  if body then error(body, 3) end
  error(err, 0)
end

-- pool:best(t, score, ...) with the caller taking part; key, value, score
-- or nil, as pool:best.
-- lazy (or nil): a lazy par.share snapshot of t, made by this call (see
-- make_in_parts).
local function best_one_call(self, t, lazy, score, ...)
  -- The entries in pairs order, first (see wire.entries: the walk scores
  -- and checks each entry, so it must not be a pairs loop).
  local ks, vs, n = require("ffipar.wire").entries(t)
  local size = math.min(PART_MAX, math.max(PART_MIN, math.ceil(n / 128)))
  local cap = math.ceil(n / size) + 16        -- parts ended early: past cap the caller scores the rest
  local share = require "ffipar.share"
  local h, addr
  if lazy then
    h, addr = lazy, share.addr_of(lazy)     -- opened by `mine`: see share.open_parts
  else
    h, addr = share.parts_stream(cap)
  end
  -- The caller keeps a core: seats for the other cores' workers, each with
  -- a part to score and one waiting.
  local seats = math.max(1, math.min(self.n, M.best_cores or C.ffipar_cpus() - 1))
  local ahead = seats + 1
  local st = { parts = {}, s = -math.huge, g = 0, own = lazy and {} or nil }
  local nx = select("#", ...)
  local f, a1, a2, a3, a4 = score, ...
  if nx > 4 then
    local args = { ... }
    f = function(k, v) return score(k, v, unpack(args, 1, nx)) end
  end
  local function mine(job, chunk, failed)
    local ok, e = true, nil
    if not failed then
      local cur = check.cur
      local outer = cur[0]
      ok, e = xpcall(caller_walk, debug.traceback, st, t, ks, vs, n, h, job:ptr(), cap, size, ahead, chunk, f,
        a1, a2, a3, a4)
      cur[0] = outer
    end
    local walked = ok and not failed and C.ffipar_atomics_load_i64(job:ptr() + 1) == 0 and st.err == nil
    share.end_parts(h, walked)
    if not walked and st.err == nil and C.ffipar_self_cancelled() == 0 then check_rest(st, t, ks, vs, n) end
    if st.err then return st.err end
    if not ok then error(e, 0) end
  end
  local args = { ... }
  args[nx + 1], args[nx + 2], args[nx + 3], args[nx + 4] = addr, lazy and "build" or "parts", seats, nx
  local results
  if not lazy then
    results = run_parallel(self, "pool:best", n, score, best_chunks, mine, unpack(args, 1, nx + 4))
    share.drop(h)                                    -- on an error, the GC does it
  else
    -- Opened before the tasks go (a score that has the snapshot as an
    -- upvalue is then refused), ended whatever happens (refused if `mine`
    -- ended it). Made in parts, or whole (an entry that crosses only
    -- converted); after an error or a cancel, the next use makes it whole.
    share.open_parts(lazy, cap, n)
    local ok, r = pcall(run_parallel, self, "pool:best", n, score, best_chunks, mine, unpack(args, 1, nx + 4))
    share.end_parts(lazy, false)
    if ok and r and st.own_whole then
      make_in_parts(lazy, ks, vs, n, st.parts, st.own)
    else
      for _, o in ipairs(st.own) do C.ffipar_msg_free(o[1]) end
      if not ok then reraise(r) end
      if r then share.make(lazy, 3) end          -- 3: pool:best's caller (a tail call)
    end
    results = r
  end
  if not results then return nil, "cancelled" end
  local best, bg, bk, bv = st.s, st.bg, st.bk, st.bv
  for _, r in ipairs(results) do
    local s, i, j = r[2], r[3], r[4]
    if i ~= nil then
      local part = st.parts[i + 1]
      local g = part[3] + j - 1
      if s > best or (s == best and g < bg) then best, bg, bk, bv = s, g, part[1][j], part[2][j] end
    end
  end
  if bg == nil then return nil end
  return bk, bv, best
end

--- The entry of `source` (a par.share snapshot, or a table, then shared for
-- this call only) with the best score(key, value, ...): key, value, score.
-- Among equal best scores, the entry that comes first in the pairs order of
-- the state that shared it, when it shared it: the serial pairs loop's
-- answer. key and value are that state's own objects there, this state's
-- copies elsewhere. nil when no score is above -math.huge.
function pool:best(source, score, ...)
  check_open(self, "pool:best", 2)
  if type(score) ~= "function" then
    lib.argerror("pool:best", "argument #2 must be a function, got " .. type(score))
  end
  local share = require "ffipar.share"
  if type(source) == "table" and not check.on() then
    return best_one_call(self, source, nil, score, ...)
  end
  local pending, opened
  if share.is_share(source) then pending, opened = share.pending(source) end
  if pending then
    -- A lazy snapshot's first use: this call makes it (in parts; whole in
    -- check mode, or after a call that began to and failed).
    if not (opened or check.on()) then return best_one_call(self, pending, source, score, ...) end
    share.make(source, 3)
  end
  local h, once = source, not share.is_share(source)
  if once then h = share.snapshot(source, "pool:best", 3) end
  local nx = select("#", ...)
  local args = { ... }
  local nchunks = share.view(h).nchunks     -- the caller's entry: no chunk decoded
  local flags = nchunks and shm.array("int64_t", nchunks, { checked = false })
  args[nx + 1], args[nx + 2], args[nx + 3], args[nx + 4] = h, once, flags or false, nx
  local results = run_parallel(self, "pool:best", nchunks or #h, score, best_chunks, nil,
    unpack(args, 1, nx + 4))
  local best, at = -math.huge, nil
  for _, r in ipairs(results or {}) do
    local s, i = r[2], r[3]
    if i ~= nil and (s > best or (s == best and (at == nil or i < at))) then best, at = s, i end
  end
  local k, v
  if at ~= nil then k, v = share.at(h, at) end
  if once then share.drop(h) end           -- on an error, the GC does it
  if not results then return nil, "cancelled" end
  if at == nil then return nil end
  return k, v, best
end

--- reduce(...reduce(reduce(map(0, ...), map(1, ...)), map(2, ...))..., map(n - 1, ...)):
-- the serial fold in index order, computed in parallel. reduce must be
-- associative (a chunk is folded in a worker, the chunks' values in the
-- caller, in index order); it need not be commutative. nil when n == 0.
function pool:map_reduce(n, map, reduce, ...)
  check_open(self, "pool:map_reduce", 2)
  if type(reduce) ~= "function" then
    lib.argerror("pool:map_reduce", "argument #3 must be a function, got " .. type(reduce))
  end
  local results = run_parallel(self, "pool:map_reduce", n, map, map_reduce_chunks, nil, reduce, ...)
  if not results then return nil, "cancelled" end
  local parts = {}
  for _, r in ipairs(results) do
    local m, los, vals = r[2], r[3], r[4]
    for k = 1, m do parts[#parts + 1] = { los[k], vals[k] } end
  end
  table.sort(parts, function(a, b) return a[1] < b[1] end)
  if #parts == 0 then return nil end
  local acc = parts[1][2]
  for k = 2, #parts do acc = reduce(acc, parts[k][2]) end
  return acc
end

return M
