-- Pools: submit/join, init, parallel_for, argmax, the race check, close.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestPool = {}

function TestPool:setUp()
  self.pool = par.pool(2)
end

function TestPool:tearDown()
  self.pool:close()
  util.gc()
end

function TestPool:testSubmitJoin()
  local f = self.pool:submit(function(a, b) return a + b, "x" end, 2, 3)
  lu.assertEquals({ f:join(10) }, { true, 5, "x" })
  lu.assertEquals(f:status(), "done")
end

function TestPool:testTaskErrorHasTraceback()
  local ok, err = self.pool:submit(function() local function inner() error("task broke") end inner() end):join(10)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "task broke")
  lu.assertStrContains(err, "stack traceback")
  lu.assertStrContains(err, "inner")
end

function TestPool:testJoinTimeoutAndCancel()
  local f = self.pool:submit(function()
    local par = require "ffipar"
    while not par.cancelled() do par.sleep(0.001) end
    return "stopped"
  end)
  lu.assertEquals({ f:join(0.05) }, { nil, "timeout" })
  f:cancel()
  lu.assertEquals({ f:join(10) }, { true, "stopped" })
  -- the worker is fine afterwards
  lu.assertEquals({ self.pool:submit(function() return 1 end):join(10) }, { true, 1 })
end

function TestPool:testStatesAreKeptAndFunctionsLoadedOnce()
  local fn = function()
    _G.ffipar_test_calls = (_G.ffipar_test_calls or 0) + 1
    _G.ffipar_test_state = _G.ffipar_test_state or tostring({})   -- one per worker state
    return _G.ffipar_test_state, tostring(debug.getinfo(1, "f").func), _G.ffipar_test_calls
  end
  local seen, calls = {}, 0
  local fs = {}
  for i = 1, 600 do fs[i] = self.pool:submit(fn) end
  for i = 1, 600 do
    local ok, id, addr, n = fs[i]:join(10)
    lu.assertTrue(ok)
    seen[id] = seen[id] or {}
    seen[id][addr] = true
    calls = math.max(calls, n)
  end
  for id, addrs in pairs(seen) do
    local k = 0
    for _ in pairs(addrs) do k = k + 1 end
    lu.assertEquals(k, 1, "worker " .. id .. " loaded the function more than once")
  end
  lu.assertTrue(calls > 1)                 -- globals persist across tasks in a worker
end

-- A task that leaves its state's heap tens of MB bigger (a parallel call
-- whose collector rested) gets it collected while the worker is idle, not
-- on the next task's time; a state whose collector is stopped is left alone.
function TestPool:testIdleWorkerCollectsWhatATaskLeft()
  local p = par.pool(1)
  local function heap_mb() return collectgarbage("count") / 1024 end
  local function leave_garbage(stop_after)
    collectgarbage("stop")
    local keep = {}
    for i = 1, 300000 do keep[i] = { i, tostring(i) } end      -- ~30 MB, garbage on return
    keep = nil
    if not stop_after then collectgarbage("restart") end
    return collectgarbage("count") / 1024
  end
  -- The heap once below 10 MB (false after 5 s); probes every 50 ms
  -- allocate far too little to drive the collector themselves.
  local function collected()
    return util.wait_until(function()
      par.sleep(0.05)
      local mb = select(2, p:submit(heap_mb):join(10))
      return mb < 10 and mb
    end, 5)
  end
  local ok, grown = p:submit(leave_garbage):join(10)
  lu.assertTrue(ok)
  lu.assertTrue(grown > 20, "the task grew the heap: " .. grown)
  lu.assertNotEquals(collected(), false, "the idle worker did not collect the task's garbage")
  -- a task already queued when the last one ends runs first: it finds the
  -- garbage still there
  local block = par.channel(1)
  local gate = p:submit(function(ch) ch:pop(10) end, block)
  local f1 = p:submit(leave_garbage)
  local f2 = p:submit(heap_mb)
  block:push(true)
  lu.assertTrue(gate:join(10))
  lu.assertTrue(f1:join(10))
  local ok2, at_start = f2:join(10)
  lu.assertTrue(ok2)
  lu.assertTrue(at_start > 20, "the idle collection ran before a queued task: " .. at_start .. " MB")
  lu.assertNotEquals(collected(), false, "not collected after the queued task")
  ok, grown = p:submit(leave_garbage, true):join(10)
  par.sleep(0.3)
  local mb = select(2, p:submit(heap_mb):join(10))
  lu.assertTrue(mb > 20, "a stopped collector was run: " .. mb .. " MB left of " .. grown)
  lu.assertTrue(p:submit(function() collectgarbage("restart") end):join(10))
  p:close()
end

-- A worker's state runs tasks for as long as the pool lives: nothing may pile
-- up per task (LuaJIT's stack holds 65500 slots; three left behind per task
-- ended the process after ~22000 tasks).
function TestPool:testWorkerRunsManyTasks()
  local p = par.pool(1)
  local f = function(i) return i end
  local n, sum, want = 30000, 0, 0
  for lo = 1, n, 500 do
    local fs = {}
    for i = lo, lo + 499 do fs[#fs + 1] = p:submit(f, i) want = want + i end
    for _, fu in ipairs(fs) do
      local ok, v = fu:join(10)
      lu.assertTrue(ok, v)
      sum = sum + v
    end
  end
  p:close()
  lu.assertEquals(sum, want)
end

function TestPool:testInitRunsOncePerWorker()
  local p = par.pool(2, { init = function() _G.ffipar_inited = (_G.ffipar_inited or 0) + 1 end })
  local fs = {}
  for i = 1, 10 do fs[i] = p:submit(function() return _G.ffipar_inited end) end
  for i = 1, 10 do lu.assertEquals({ fs[i]:join(10) }, { true, 1 }) end
  p:close()
end

function TestPool:testInitErrorRaised()
  lu.assertErrorMsgContains("ffipar.pool: init failed in a worker", par.pool, 2,
    { init = function() error("no init today") end })
end

function TestPool:testParallelForCoversEachIndexOnce()
  local n = 10007
  local a = par.array("int32_t", n, { checked = true })
  self.pool:parallel_for(n, function(lo, hi, a) for i = lo, hi - 1 do a[i] = a[i] + 1 end end, a)
  local bad = 0
  for i = 0, n - 1 do if a[i] ~= 1 then bad = bad + 1 end end
  lu.assertEquals(bad, 0)
end

function TestPool:testParallelForBalancesUnevenWork()
  -- All the work is in the first indices; dynamic chunks spread it anyway.
  -- First both workers are known to be up (a slow start, e.g. under
  -- valgrind, would otherwise let one worker take every slow chunk).
  local b = par.barrier(2)
  local wait = function(b) return b:wait(30) end
  local up = { self.pool:submit(wait, b), self.pool:submit(wait, b) }
  for _, f in ipairs(up) do lu.assertTrue((f:join(60))) end
  local n = 64
  local who = par.array("int32_t", n)
  self.pool:parallel_for(n, function(lo, hi, who)
    local par = require "ffipar"
    for i = lo, hi - 1 do
      if i < 16 then par.sleep(0.02) end
      who[i] = par.id()
    end
  end, who)
  local ids = {}
  for i = 0, 15 do ids[who[i]] = true end
  local k = 0
  for _ in pairs(ids) do k = k + 1 end
  lu.assertEquals(k, 2)
end

-- A failing chunk stops the other workers from claiming more (each of the
-- n chunks left would take 2 ms; without the stop they all run), and the
-- error reaches the caller with the worker's traceback. Each parallel call.
function TestPool:testErrorStopsTheOtherWorkers()
  local total = 100                    -- chunks of ceil(100 / (2 x 16)) = 4: 25 chunks
  local function item(i, ran)          -- for argmax and map_reduce: 2 ms a chunk
    if i == 0 then error("chunk zero failed") end
    if i % 4 == 0 then require("ffipar").atomics.add(ran:ptr(), 1); require("ffipar").sleep(0.002) end
    return i
  end
  local calls = {
    parallel_for = function(ran)
      return self.pool:parallel_for(total, function(lo, hi, ran)
        if lo == 0 then error("chunk zero failed") end
        require("ffipar").atomics.add(ran:ptr(), 1); require("ffipar").sleep(0.002)
      end, ran)
    end,
    argmax = function(ran) return self.pool:argmax(total, item, ran) end,
    map_reduce = function(ran) return self.pool:map_reduce(total, item, math.max, ran) end,
  }
  for name, call in pairs(calls) do
    local ran = par.array("int64_t", 1)
    local ok, err = pcall(call, ran)
    lu.assertFalse(ok, name)
    lu.assertStrContains(err, "chunk zero failed")
    lu.assertStrContains(err, "stack traceback")
    lu.assertTrue(tonumber(ran[0]) < 12, name .. ": " .. tostring(ran[0]) .. " of 24 other chunks ran")
  end
  lu.assertEquals(self.pool:submit(function() return "alive" end):join(10), true)
end

function TestPool:testParallelForEmptyAndBadArguments()
  lu.assertTrue(self.pool:parallel_for(0, function() error("never") end))
  lu.assertErrorMsgContains("pool:parallel_for: n must be an integer >= 0, got -1",
    self.pool.parallel_for, self.pool, -1, print)
  lu.assertErrorMsgContains("pool:parallel_for: argument #2 must be a function",
    self.pool.parallel_for, self.pool, 3, 4)
  lu.assertErrorMsgContains("pool:parallel_for: expected a par.pool as self (use pool:method()), got 3",
    self.pool.parallel_for, 3, print)
end

function TestPool:testArgmaxEqualsSerial()
  local sin, cos = math.sin, math.cos
  local function score(i, k) return sin(0.001 * i) * cos(k * i) end
  local n = 200000
  local best, at = self.pool:argmax(n, score, 0.0007)
  local sb, sa = -math.huge, nil
  for i = 0, n - 1 do local s = score(i, 0.0007) if s > sb then sb, sa = s, i end end
  lu.assertEquals({ best, at }, { sb, sa })
end

function TestPool:testArgmaxTiesGoToLowestIndex()
  lu.assertEquals({ self.pool:argmax(10000, function(i) return i % 100 == 7 and 1 or 0 end) }, { 1, 7 })
  lu.assertEquals({ self.pool:argmax(5000, function() return 3 end) }, { 3, 0 })
end

function TestPool:testArgmaxManyArgumentsAndEmpty()
  local best, at = self.pool:argmax(100, function(i, a, b, c, d, e) return -(i - (a + b + c + d + e)) ^ 2 end,
    1, 2, 3, 4, 5)
  lu.assertEquals({ best, at }, { -0, 15 })
  lu.assertNil(self.pool:argmax(0, function() return 1 end))
end

function TestPool:testMapReduceIsTheSerialFold()
  local sum = self.pool:map_reduce(10000, function(i, k) return k * i end, function(a, b) return a + b end, 3)
  lu.assertEquals(sum, 3 * 9999 * 10000 / 2)
  -- Concatenation is associative, not commutative: the chunks must be
  -- folded in index order, whichever worker computed them.
  local parts = {}
  for i = 0, 2999 do parts[#parts + 1] = tostring(i) end
  local joined = self.pool:map_reduce(3000, function(i)
    if i % 97 == 0 then require("ffipar").sleep(0.0005) end      -- uneven work
    return tostring(i)
  end, function(a, b) return a .. "," .. b end)
  local want = table.concat(parts, ",")
  lu.assertTrue(joined == want, "not the serial fold; starts: " .. joined:sub(1, 60))
  -- Tables cross too; more than four extra arguments; n == 0; n == 1.
  local mm = self.pool:map_reduce(500, function(i, a, b, c, d, e) return { i + a + b + c + d + e, i } end,
    function(x, y) return { math.min(x[1], y[1]), math.max(x[2], y[2]) } end, 1, 2, 3, 4, 5)
  lu.assertEquals(mm, { 15, 499 })
  lu.assertNil(self.pool:map_reduce(0, function() error("never") end, print))
  lu.assertEquals(self.pool:map_reduce(1, function(i) return i + 7 end, print), 7)
end

-- Bad arguments are named as the caller's and reported at the caller's line.
function TestPool:testBadArgumentsReportedAtTheCall()
  local here = debug.getinfo(1, "S").short_src
  local co = coroutine.create(function() end)
  local function err_of(f) local ok, e = pcall(f); lu.assertFalse(ok); return e end
  local p = self.pool
  local cases = {
    { function() p:parallel_for(3, print, co) end, "pool:parallel_for: argument #3 is a coroutine" },
    { function() p:parallel_for(3, function() return co end) end,
      "pool:parallel_for: upvalue 'co' of argument #2 is a coroutine" },
    { function() p:parallel_for(3, 4) end, "pool:parallel_for: argument #2 must be a function" },
    { function() p:argmax(3, print, 1, co) end, "pool:argmax: argument #4 is a coroutine" },
    { function() p:map_reduce(3, print, print, co) end, "pool:map_reduce: argument #4 is a coroutine" },
    { function() p:map_reduce(3, print, 5) end, "pool:map_reduce: argument #3 must be a function" },
    { function() p:map_reduce(-1, print, print) end, "pool:map_reduce: n must be an integer >= 0" },
    { function() p.map_reduce(3, print, print) end, "pool:map_reduce: expected a par.pool as self (use pool:method()), got 3" },
  }
  for _, c in ipairs(cases) do
    local e = err_of(c[1])
    lu.assertStrContains(e, c[2])
    lu.assertEquals(e:sub(1, #here + 1), here .. ":", e)
  end
  local closed = par.pool(1)
  closed:close()
  for _, f in ipairs{ function() closed:parallel_for(3, print) end, function() closed:argmax(3, print) end,
      function() closed:map_reduce(3, print, print) end, function() closed:submit(print) end } do
    local e = err_of(f)
    lu.assertStrContains(e, "the pool is closed")
    lu.assertEquals(e:sub(1, #here + 1), here .. ":", e)
  end
end

-- The jit.v log of a 1-worker pool while job(pool) runs.
local function worker_jit_log(job)
  local path = os.tmpname()
  local p = par.pool(1)
  lu.assertTrue((p:submit(function(path) require("util").jit_reset() require("jit.v").on(path) end, path):join(10)))
  job(p)
  lu.assertTrue((p:submit(function() require("jit.v").off() end):join(10)))
  p:close()
  return util.take_file(path)
end

-- The line of ffi/ffipar/pool.lua that contains text.
local function pool_line(text)
  local line = 0
  for l in io.lines("ffi/ffipar/pool.lua") do
    line = line + 1
    if l:find(text, 1, true) then return line end
  end
  error("not in pool.lua: " .. text)
end

-- The argmax scan loop and the map_reduce fold compile in the worker, with
-- no NYI and no abort; the argmax trace loops on the common case (no new
-- best).
function TestPool:testArgmaxAndMapReduceLoopsCompileInWorker()
  local sin, cos = math.sin, math.cos
  local log = worker_jit_log(function(p)
    lu.assertNotNil(p:argmax(200000, function(i) return sin(0.001 * i) * cos(0.0007 * i) end))
  end)
  util.assert_compiles(lu, log, "pool.lua", pool_line("while not (s > best) do"))
  log = worker_jit_log(function(p)
    lu.assertNotNil(p:map_reduce(200000, function(i) return sin(i) end, function(a, b) return a + b end))
  end)
  -- (Only pool.lua's traces: sending the chunks' values back is not a loop
  -- that matters, and its return to the C frame is not compiled.)
  log = log:gsub("[^\n]*\n", function(l) return l:find("pool.lua:", 1, true) and l or "" end)
  util.assert_compiles(lu, log, "pool.lua", pool_line("for i = lo + 1, hi - 1 do acc = reduce("))
end

-- The Mandelbrot kernel of examples/mandelbrot.lua (the `make bench` job):
-- in a worker, each pass over a row's pixels is one loop trace, no NYI, no
-- abort, and no side trace starts inside the pass (no exit per pixel).
function TestPool:testMandelbrotPassIsOneTraceInWorker()
  local rows, src = util.mandelbrot_rows()
  local pass, last
  local line = 0
  for l in src:gmatch("([^\n]*)\n") do
    line = line + 1
    if not pass and l:find("for k = 0, m - 1 do", 1, true) then pass = line end
    if l:find("keep the pixel while", 1, true) then last = line end
  end
  lu.assertNotNil(pass); lu.assertNotNil(last)
  local n = 300
  local buf = par.array("uint8_t", math.floor((n + 7) / 8) * n)
  local log = worker_jit_log(function(p) p:parallel_for(n, rows, buf, n) end)
  local root = log:match("%[TRACE%s+(%d+)%s+mandelbrot%.lua:" .. pass .. " loop%]")
  lu.assertNotNil(root, "no loop trace at mandelbrot.lua:" .. pass .. ":\n" .. log)
  -- (The return from rows() to the worker's C frame is not compiled, once a
  -- chunk: "NYI: return to lower frame" at its last line is expected.)
  for id, l in log:gmatch("%[TRACE%s+(%S+)[^\n]-mandelbrot%.lua:(%d+)") do
    l = tonumber(l)
    if l >= pass and l <= last then
      lu.assertNotEquals(id, "---", "trace aborted in the pass:\n" .. log)
    end
  end
  for parent, l in log:gmatch("%[TRACE%s+%d+%s+%((%d+)/%d+%)%s+mandelbrot%.lua:(%d+)") do
    if parent == root and tonumber(l) >= pass and tonumber(l) <= last then
      lu.fail("a side trace of the pass starts at mandelbrot.lua:" .. l .. ":\n" .. log)
    end
  end
end

function TestPool:testRaceCheckInParallelFor()
  local a = par.array("double", 4, { checked = true, name = "best" })
  local ok, err = pcall(self.pool.parallel_for, self.pool, 64, function(lo, hi, a)
    require("ffipar").sleep(0.002)
    a[0] = lo                                  -- every chunk writes slot 0: a race
  end, a)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "race on checked array 'best' index 0")
  lu.assertStrMatches(err, ".*written by chunk %[%d+, %d+%) and chunk %[%d+, %d+%) of pool:parallel_for at test/test_pool.lua:%d+.*")
end

function TestPool:testCloseWaitsAndIsIdempotent()
  local p = par.pool(1)
  local f = p:submit(function() require("ffipar").sleep(0.1); return "finished" end)
  lu.assertTrue(p:close())
  lu.assertEquals({ f:join(0) }, { true, "finished" })
  lu.assertTrue(p:close())
  lu.assertErrorMsgContains("pool:submit: the pool is closed", p.submit, p, print)
  lu.assertErrorMsgContains("pool:argmax: the pool is closed", p.argmax, p, 3, print)
end

function TestPool:testDefaultSizeAndBadArguments()
  local p = par.pool()
  lu.assertEquals(p:size(), par.cpus())
  p:close()
  lu.assertErrorMsgContains("ffipar.pool: worker count must be an integer >= 1", par.pool, 0)
  lu.assertErrorMsgContains("ffipar.pool: options must be a table", par.pool, 2, 3)
  lu.assertErrorMsgContains("ffipar.pool: options.init must be a function", par.pool, 2, { init = 1 })
  lu.assertErrorMsgContains("pool:submit: argument #1 must be a function", self.pool.submit, self.pool, 1)
end

function TestPool:testNoLeaks()
  local before = util.settled_live()
  local p = par.pool(2)
  local a = par.array("double", 100)
  p:parallel_for(100, function(lo, hi, a) for i = lo, hi - 1 do a[i] = i end end, a)
  p:submit(function(a) return a end, a):join(10)
  p:close()
  p, a = nil, nil
  lu.assertEquals(util.settled_live(), before)
end

-- A parallel call in a worker that is cancelled returns nil, "cancelled"
-- once the pool's chunks have stopped (none still running), like every
-- other blocking call.
function TestPool:testParallelCallsInCancelledWorkerReturnCancelledAfterChunksStop()
  -- Enough 2 ms items (100 s of work; chunks of ~3 s) that the cancel lands first even
  -- where the main thread waits long for a core (valgrind runs one thread
  -- at a time); a prompt cancel stops it after a few items.
  local n = 50000
  for _, call in ipairs({ "parallel_for", "argmax", "map_reduce" }) do
    local counts = par.array("int64_t", 2)        -- chunks started, chunks finished
    local t = par.spawn(function(call, counts, n)
      local par = require "ffipar"
      local pool = par.pool(2)
      local function item(i, counts)
        par.atomics.add(counts:ptr(), 1)
        local t0 = par.now()
        while par.now() - t0 < 0.002 do end      -- busy, blind to the cancel
        par.atomics.add(counts:ptr() + 1, 1)
        return i
      end
      local r1, r2
      if call == "parallel_for" then
        r1, r2 = pool:parallel_for(n, function(lo, hi, counts)
          for i = lo, hi - 1 do item(i, counts) end
        end, counts)
      elseif call == "argmax" then
        r1, r2 = pool:argmax(n, item, counts)
      else
        r1, r2 = pool:map_reduce(n, item, function(a, b) return a + b end, counts)
      end
      local started, finished = par.atomics.load(counts:ptr()), par.atomics.load(counts:ptr() + 1)
      pool:close()
      return r1, r2, started, finished
    end, call, counts, n)
    lu.assertTrue(util.wait_until(function() return par.atomics.load(counts:ptr()) > 0 end, 10))
    t:cancel()
    local ok, r1, r2, started, finished = t:join(20)
    lu.assertTrue(ok, call .. ": " .. tostring(r1))
    lu.assertEquals({ r1, r2 }, { nil, "cancelled" }, call)
    lu.assertEquals(started, finished, call)           -- no chunk still running
    lu.assertTrue(finished < n, call)                  -- the others stopped claiming
  end
end

-- Futures and pools cross by reference: a future handed to a collector
-- through a channel, a pool used from a worker (its tasks, parallel calls),
-- and the pool closes once only its workers hold it.
function TestPool:testFutureAndPoolCrossIntoWorkers()
  local before = util.settled_live()
  local pool = par.pool(2)
  local ch = par.channel(8)
  for i = 1, 4 do assert(ch:push(pool:submit(function(i) return i * i end, i))) end
  ch:close()
  local ok, sum = par.spawn(function(ch)
    local sum = 0
    for f in ch:iter() do
      local fok, v = f:join(10)
      assert(fok, v)
      sum = sum + v
    end
    return sum
  end, ch):join(10)
  lu.assertEquals({ ok, sum }, { true, 1 + 4 + 9 + 16 })
  local ok2, best, at, tok, tv, size = par.spawn(function(pool)
    local best, at = pool:argmax(100, function(i) return -(i - 42) ^ 2 end)
    local tok, tv = pool:submit(function() return "task" end):join(10)
    assert(pool:parallel_for(10, function() end))
    return best, at, tok, tv, pool:size()
  end, pool):join(10)
  lu.assertEquals({ ok2, best, at, tok, tv, size }, { true, 0, 42, true, "task", 2 })
  -- The main thread lets go; a worker still uses the pool, which closes
  -- (its workers exit) once that worker's handle is gone too.
  local go = par.semaphore(0)
  local t = par.spawn(function(pool, go)
    assert(go:acquire(10))
    local fok, v = pool:submit(function() return "still open" end):join(10)
    return fok, v
  end, pool, go)
  pool = nil
  util.gc()
  go:release()
  lu.assertEquals({ t:join(10) }, { true, true, "still open" })
  t, ch, go = nil, nil, nil
  lu.assertEquals(util.settled_live(), before)
end

function TestPool:testParallelCallFromItsOwnTaskIsRefused()
  local pool = par.pool(1)
  local ok, pok, err = pool:submit(function(pool)
    return pcall(function() local r = pool:parallel_for(10, function() end); return r end)
  end, pool):join(10)
  lu.assertTrue(ok)
  lu.assertFalse(pok)
  lu.assertStrContains(err, "pool:parallel_for: called from a task of the same pool")
  -- close from its own task does not wait for itself
  lu.assertEquals({ pool:submit(function(pool) return pool:close() end, pool):join(10) }, { true, true })
  lu.assertErrorMsgContains("the pool is closed", pool.submit, pool, function() end)
  pool:close()
end
