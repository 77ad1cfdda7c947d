-- The race check and check mode: a catalogue of small programs, racy and
-- race-free, each run 20 times on pools of 1, 2 and 4 workers: every racy
-- one is reported every time (the check follows strands, not threads, so
-- the schedule does not matter), no race-free one ever is.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

TestCheck = {}

local RUNS = math.max(2, util.scale(20))   -- the plain run's 20 prove the determinism
local SIZES = { 1, 2, 4 }

function TestCheck:setUp()
  self.was = par.check()
  par.check(true)
  self.pools = {}
  for k, w in ipairs(SIZES) do self.pools[k] = par.pool(w) end
end

function TestCheck:tearDown()
  for _, p in ipairs(self.pools) do p:close() end
  par.check(self.was)
  util.gc()
end

-- Run program(pool, run) RUNS times on each pool. A racy program must raise
-- an error matching `report` every time; a race-free one (report == nil)
-- must never raise, and returns true when its result is right.
local function catalogue(self, program, report)
  for k, pool in ipairs(self.pools) do
    for run = 1, RUNS do
      local ok, err = pcall(program, pool, run)
      local where = (" (pool of %d, run %d)"):format(SIZES[k], run)
      if report then
        lu.assertFalse(ok, "not reported" .. where)
        if not tostring(err):match(report) then
          lu.fail("wrong report" .. where .. ": " .. tostring(err) .. "\nexpected: " .. report)
        end
      else
        lu.assertTrue(ok, tostring(err) .. where)
        lu.assertTrue(err, "wrong result" .. where)
      end
    end
  end
end

local N = 100            -- check mode: 50 chunks of 2 for any pool size

-- Two chunks, whichever access each made: "read by chunk [0, 2) and written
-- by chunk [2, 4)", "written by chunk [0, 2) and chunk [2, 4)" (both wrote).
local PAIR = "%a+ by chunk %[%d+, %d+%) and [%a ]-chunk %[%d+, %d+%)"

---- racy ----

function TestCheck:testWriteWriteOnOneSlot()
  local best = par.array("double", N, { name = "best" })
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, best) best[0] = lo end, best)
  end, "race on checked array 'best' index 0: written by chunk %[%d+, %d+%) and chunk %[%d+, %d+%) "
    .. "of pool:parallel_for at test/test_check.lua:%d+")
end

function TestCheck:testReadWriteBetweenNeighbours()
  local grid = par.array("double", N, { name = "grid" })
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, grid)
      for i = lo, hi - 1 do
        local left = i > 0 and grid[i - 1] or 0
        local right = i < #grid - 1 and grid[i + 1] or 0
        grid[i] = (left + right) / 2
      end
    end, grid)
  end, "race on checked array 'grid' index %d+: " .. PAIR .. " of pool:parallel_for at test/test_check.lua:%d+")
end

-- The exact report for one schedule-independent case: in a pool of 1 the
-- chunks run in order, so chunk [0, 2) writes slot 1 and chunk [2, 4)
-- reads it.
function TestCheck:testReportNamesReadAndWrittenChunks()
  local grid = par.array("double", N, { name = "grid" })
  local p = par.pool(1)
  local ok, err = pcall(p.parallel_for, p, N, function(lo, hi, grid)
    for i = lo, hi - 1 do grid[i] = (i > 0 and grid[i - 1] or 0) + 1 end
  end, grid)
  p:close()
  lu.assertFalse(ok)
  lu.assertStrContains(err, "race on checked array 'grid' index 1: written by chunk [0, 2) and read by "
    .. "chunk [2, 4) of pool:parallel_for at test/test_check.lua:")
end

function TestCheck:testReductionIntoOneSlot()
  local total = par.array("double", 1, { name = "total" })
  catalogue(self, function(pool)
    return pool:map_reduce(N, function(i, total)
      total[0] = total[0] + i
      return i
    end, function(a, b) return a + b end, total)
  end, "race on checked array 'total' index 0: " .. PAIR .. " of pool:map_reduce at test/test_check.lua:%d+")
end

par.cdef("typedef struct { int32_t hits; double sum; } test_check_cell_t;")

function TestCheck:testFieldWrite()
  local cells = par.array("test_check_cell_t", 4, { name = "cells" })
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, cells)
      cells[0].hits = 1                        -- a field write, in every chunk
    end, cells)
  end, "race on checked array 'cells' index 0: written by chunk %[%d+, %d+%) and chunk")
end

function TestCheck:testArgmaxScoreWritingASlot()
  local last = par.array("int32_t", 1, { name = "last" })
  catalogue(self, function(pool)
    return pool:argmax(N, function(i, last) last[0] = i; return -i end, last)
  end, "race on checked array 'last' index 0: written by chunk %[%d+, %d+%) and chunk "
    .. "%[%d+, %d+%) of pool:argmax at")
end

function TestCheck:testUpvalueTableWritten()
  local seen = {}
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi)
      for i = lo, hi - 1 do seen[i] = true end
    end)
  end, "ffipar.check: pool:parallel_for at test/test_check.lua:%d+: its function %(the function at "
    .. "test/test_check.lua:%d+%) wrote key %d+ of the table in upvalue 'seen' of the function at "
    .. "test/test_check.lua:%d+; each worker has its own copy, so the write is lost to the caller "
    .. "and to the other workers")
  lu.assertNil(next(seen))
end

function TestCheck:testArgumentTableWritten()
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, stats) stats.count = (stats.count or 0) + 1 end, { count = 0 })
  end, "wrote key 'count' of the table in argument #3")
end

function TestCheck:testGlobalWritten()
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi)
      last_chunk = lo                          -- luacheck: ignore (the point of the test)
    end)
  end, "ffipar.check: pool:parallel_for at test/test_check.lua:%d+: its function %(the function at "
    .. "test/test_check.lua:%d+%) assigned the global 'last_chunk' at test/test_check.lua:%d+; "
    .. "globals are per worker, so the write is lost")
  lu.assertNil(rawget(_G, "last_chunk"))
end

-- A memo table in a helper: each worker fills its own copy, and the caller's
-- stays empty.
function TestCheck:testMemoTableWritten()
  local memo = {}
  local function cost(k)
    local v = memo[k]
    if v == nil then
      v = k % 7 * 3
      memo[k] = v
    end
    return v
  end
  catalogue(self, function(pool)
    return pool:argmax(N, function(i) return cost(i % 10) end)
  end, "wrote key %d of the table in upvalue 'memo' of the function at test/test_check.lua:%d+")
end

function TestCheck:testTasksInAPhase()
  local slot = par.array("int32_t", 4, { name = "slot" })
  catalogue(self, function(pool)
    par.phase(function()
      local f1 = pool:submit(function(slot) slot[2] = 1 end, slot)
      assert(f1:join(10))
      local f2 = pool:submit(function(slot) return slot[2] end, slot)
      local ok, err = f2:join(10)
      if not ok then error(err, 0) end
    end)
  end, "race on checked array 'slot' index 2: written by task 1 %(pool:submit at test/test_check.lua:%d+%) "
    .. "and read by task 2 %(pool:submit at test/test_check.lua:%d+%)")
end

-- pool:best gets its strands from the shared parallel path too.
function TestCheck:testBestScoreWritingASlot()
  local last = par.array("int32_t", 1, { name = "last" })
  local t = {}
  for i = 1, N do t["k" .. i] = i end
  catalogue(self, function(pool)
    return pool:best(t, function(k, v, last) last[0] = v; return v end, last)
  end, "race on checked array 'last' index 0: written by chunk %[%d+, %d+%) and chunk "
    .. "%[%d+, %d+%) of pool:best at")
end

-- The values pool:best scores are the worker's copy of the shared table: a
-- score that writes into one (a memo field) loses the write. The run number
-- goes in, so each run's write changes the copy the worker kept. Both
-- sources: a par.share snapshot (kept by the workers across runs) and a
-- table shared for one call.
function TestCheck:testBestScoreWritingItsValue()
  local t = {}
  for i = 1, N do t["k" .. i] = { x = i } end
  local sh = par.share(t)
  for _, source in ipairs({ sh, t }) do
    catalogue(self, function(pool, run)
      return pool:best(source, function(k, v, run) v.last = run; return v.x end, run)
    end, "ffipar.check: pool:best at test/test_check.lua:%d+: its function %(the function at "
      .. "test/test_check.lua:%d+%) wrote key 'last' of the table in the value of entry \"k%d+\" of "
      .. "the shared table; each worker has its own copy, so the write is lost")
  end
  for _, v in pairs(t) do lu.assertNil(v.last) end
end

-- A task of a phase that writes into the table it got from a snapshot.
function TestCheck:testTaskWritingASnapshotsTable()
  local sh = par.share({ total = 0 })
  catalogue(self, function(pool, run)
    par.phase(function()
      local ok, err = pool:submit(function(sh, run) sh:get().total = run end, sh, run):join(10)
      if not ok then error(err, 0) end
    end)
  end, "ffipar.check: task 1 %(pool:submit at test/test_check.lua:%d+%) %(the function at "
    .. "test/test_check.lua:%d+%) wrote key 'total' of the table in the table of a par.share "
    .. "snapshot %(sh:get%(%)%)")
  lu.assertEquals(sh:get().total, 0)
end

-- A spawned function of a phase is watched like a parallel call's function.
function TestCheck:testSpawnedFunctionWritesUpvalueTable()
  local totals = { 0 }
  catalogue(self, function()
    par.phase(function()
      local ok, err = par.spawn(function() totals[1] = totals[1] + 1 end):join(10)
      if not ok then error(err, 0) end
    end)
  end, "ffipar.check: spawned function 1 %(par.spawn at test/test_check.lua:%d+%) %(the function at "
    .. "test/test_check.lua:%d+%) wrote key 1 of the table in upvalue 'totals'")
  lu.assertEquals(totals[1], 0)
end

---- race-free ----

function TestCheck:testDisjointWrites()
  local out = par.array("double", N, { name = "out" })
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, out)
      for i = lo, hi - 1 do out[i] = i * i end
    end, out)
    for i = 0, N - 1 do if out[i] ~= i * i then return false end end
    return true
  end)
end

function TestCheck:testReadOnlySharing()
  local input = par.array("double", N, { name = "input" })
  for i = 0, N - 1 do input[i] = i end
  catalogue(self, function(pool)
    local best, at = pool:argmax(N, function(i, input)
      local s = 0
      for j = 0, #input - 1 do s = s + input[j] end  -- every chunk reads every slot
      return s - (input[i] - 50) ^ 2
    end, input)
    return at == 50 and best == N * (N - 1) / 2
  end)
end

function TestCheck:testStencilOverTwoArrays()
  local src = par.array("double", N, { name = "src" })
  local dst = par.array("double", N, { name = "dst" })
  for i = 0, N - 1 do src[i] = i end
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, src, dst)
      for i = lo, hi - 1 do
        dst[i] = ((i > 0 and src[i - 1] or 0) + (i < #src - 1 and src[i + 1] or 0)) / 2
      end
    end, src, dst)
    return dst[10] == 10 and dst[0] == 0.5
  end)
end

function TestCheck:testDisjointFieldWritesAndPureReduction()
  local cells = par.array("test_check_cell_t", N, { name = "cells" })
  catalogue(self, function(pool)
    local sum = pool:map_reduce(N, function(i, cells)
      cells[i].hits = i                        -- each chunk its own slots
      cells[i].sum = cells[i].hits * 0.5
      local scratch = { i }                    -- a table of its own: fine to write
      scratch[2] = i
      return scratch[2]
    end, function(a, b) return a + b end, cells)
    return sum == N * (N - 1) / 2 and cells[7].sum == 3.5
  end)
end

function TestCheck:testBestReadingSharedArrays()
  local w = par.array("double", N, { name = "w" })
  for i = 0, N - 1 do w[i] = (i * 37) % N end
  local t = {}
  local want = -1
  for i = 0, N - 1 do
    t[i] = i
    want = math.max(want, w[i] + w[(i + 1) % N])
  end
  catalogue(self, function(pool)
    local k, v, s = pool:best(t, function(k, v, w) return w[v] + w[(v + 1) % #w] end, w)
    return s == want and w[k] + w[(k + 1) % N] == want
  end)
end

-- Scores that only read the shared table's values: never reported.
function TestCheck:testBestReadingASnapshot()
  local t, want = {}, -1
  for i = 1, N do
    t["k" .. i] = { x = (i * 37) % N, tags = { "a", i } }
    want = math.max(want, (i * 37) % N)
  end
  local sh = par.share(t)
  catalogue(self, function(pool)
    local k, v, s = pool:best(sh, function(k, v) return v.x + #v.tags - 2 end)
    return s == want and t[k].x == want and v.x == want
  end)
end

function TestCheck:testUpvalueTableOnlyRead()
  local weights = { 1, 2, 3 }
  local out = par.array("double", N)
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, out)
      for i = lo, hi - 1 do out[i] = weights[i % 3 + 1] end
    end, out)
    return out[4] == 2
  end)
end

---- the switch, the marks, the strands outside check mode ----

function TestCheck:testSwitchMakesArraysChecked()
  lu.assertTrue(par.check())
  lu.assertStrContains(tostring(par.array("double", 2)), " checked")
  lu.assertNotStrContains(tostring(par.array("double", 2, { checked = false })), " checked")
  par.check(false)
  lu.assertNotStrContains(tostring(par.array("double", 2)), " checked")
  lu.assertStrContains(tostring(par.array("double", 2, { checked = true })), " checked")
  lu.assertErrorMsgContains("ffipar.check: argument #1 must be a boolean or nil, got number", par.check, 1)
  lu.assertErrorMsgContains("ffipar.check: argument #1 must be a boolean or nil, got string", par.check, "on")
end

-- FFIPAR_CHECK=1 turns check mode on in a fresh process (and in its workers).
function TestCheck:testEnvironmentVariable()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
    local par = require "ffipar"
    local a = par.array("double", 8)
    local p = par.pool(1)
    local ok, err = pcall(p.parallel_for, p, 8, function(lo, hi, a) a[0] = lo end, a)
    local ok2, inner = p:submit(function() return tostring(require("ffipar").array("int8_t", 1)) end):join(10)
    p:close()
    io.write(tostring(par.check()), " ", tostring(a):match(" checked") or "-", " ", tostring(ok), " ",
      tostring(err):match("race on checked array") or tostring(err), " ", inner:match(" checked") or "-")
  ]])
  f:close()
  local function run(value)
    local p = io.popen(("FFIPAR_CHECK=%s timeout -k 5 60 %s %s 2>&1"):format(value, util.luajit(), script))
    local out = p:read("*a")
    p:close()
    return out
  end
  lu.assertEquals(run("1"), "true  checked false race on checked array  checked")
  lu.assertEquals(run("0"), "false - true true -")
  lu.assertStrContains(run("maybe"), "FFIPAR_CHECK must be 1 or 0, got 'maybe'")
  os.remove(script)
end

-- Item 4 of #11: marks are 64-bit atomics, so each must be 8-byte aligned
-- whatever the element size (a split-lock atomic is slow on x86 and
-- SIGBUS where the kernel makes split locks fatal).
par.cdef("typedef struct { char c[3]; } test_check_odd_t;")
par.cdef("typedef struct { int16_t a; char b; } test_check_odd5_t;")
function TestCheck:testMarksAligned()
  for _, elem in ipairs({ "char", "int16_t", "test_check_odd_t", "test_check_odd5_t", "uint8_t" }) do
    for _, n in ipairs({ 1, 3, 5, 7, 13 }) do
      local a = par.array(elem, n, { checked = true, name = elem })
      for i = 0, n - 1 do
        lu.assertEquals(util.addr(a.marks + 3 * i) % 8, 0, elem .. "[" .. n .. "] slot " .. i)
        lu.assertTrue(util.addr(a.marks + 3 * i) >= util.addr(a:ptr() + n), "marks after the elements")
      end
      local ok, err = pcall(self.pools[2].parallel_for, self.pools[2], 2 * n, function(lo, hi, a)
        a[#a - 1] = a[#a - 1]
      end, a)
      if 2 * n > 1 then
        lu.assertFalse(ok)
        lu.assertStrContains(err, "race on checked array '" .. elem .. "' index " .. (n - 1))
      end
    end
  end
end

-- Explicitly checked arrays follow strands outside check mode too (chunks
-- then depend on the pool's size, so the slots may differ between pools).
function TestCheck:testCheckedArrayOutsideCheckModeOnPoolOfOne()
  par.check(false)
  local a = par.array("double", 4, { checked = true, name = "a" })
  local p = par.pool(1)
  for _ = 1, RUNS do
    local ok, err = pcall(p.parallel_for, p, 1000, function(lo, hi, a) a[0] = a[0] + 1 end, a)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "race on checked array 'a' index 0")
  end
  p:close()
end

-- The caller's own code in par.phase is no strand: reading what a joined
-- task wrote is not a race.
function TestCheck:testCallerOfPhaseIsNoStrand()
  local a = par.array("int32_t", 4, { name = "a" })
  par.phase(function()
    a[1] = 5
    lu.assertTrue((par.spawn(function(a) a[2] = a[1] + 1 end, a):join(10)))
    lu.assertEquals(a[2], 6)
    a[2] = 7
  end)
  lu.assertEquals(a[2], 7)
end

-- A checked element stands for its contents when stored, and its fields
-- read and write through.
function TestCheck:testCheckedElementReference()
  local cells = par.array("test_check_cell_t", 3, { name = "cells" })
  cells[0].hits = 4
  cells[1] = cells[0]
  lu.assertEquals(cells[1].hits, 4)
  cells[2] = { 9, 1.5 }
  lu.assertEquals(cells[2].sum, 1.5)
  lu.assertStrContains(tostring(cells[2]), "checked element 2 of 'cells'")
  lu.assertErrorMsgContains("index 3 out of bounds", function() return cells[3] end)
end

-- Nested struct fields and elements of array elements are checked too.
par.cdef("typedef struct { double x, y; } test_check_v2_t; typedef struct { test_check_v2_t pos; int32_t id; } test_check_body_t;")
function TestCheck:testNestedFieldsAndArrayElements()
  local bodies = par.array("test_check_body_t", 8, { name = "bodies" })
  local vecs = par.array("double[3]", 8, { name = "vecs" })
  bodies[1].pos.x = 3
  vecs[2][1] = 5
  lu.assertEquals({ bodies[1].pos.x, bodies:ptr()[1].pos.x, vecs[2][1], vecs:ptr()[2][1] }, { 3, 3, 5, 5 })
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, bodies) bodies[0].pos.y = lo end, bodies)
  end, "race on checked array 'bodies' index 0: " .. PAIR)
  catalogue(self, function(pool)
    pool:parallel_for(N, function(lo, hi, vecs) vecs[3][0] = vecs[3][1] + lo end, vecs)
  end, "race on checked array 'vecs' index 3: " .. PAIR)
  catalogue(self, function(pool)
    pool:parallel_for(8, function(lo, hi, vecs, bodies)
      for i = lo, hi - 1 do vecs[i][0] = vecs[i][1] + 1; bodies[i].pos.x = bodies[i].pos.y end
    end, vecs, bodies)
    return vecs[7][0] == 1
  end)
end

-- A checked array's accessors compile in a worker, in check mode, with no
-- NYI (the slow path is a C call the trace leaves for only on a slot's
-- first touch by a strand).
function TestCheck:testCheckedAccessCompilesInWorker()
  local path = os.tmpname()
  local p = self.pools[1]
  lu.assertTrue((p:submit(function(path) require("util").jit_reset() require("jit.v").on(path) end, path):join(10)))
  local a = par.array("double", 20000, { name = "a" })
  p:parallel_for(#a, function(lo, hi, a)
    for _ = 1, 3 do
      for i = lo, hi - 1 do a[i] = a[i] * 0.5 + i end
    end
  end, a)
  lu.assertTrue((p:submit(function() require("jit.v").off() end):join(10)))
  local log = util.take_file(path)
  log = log:gsub("[^\n]*\n", function(l) return l:find("test_check.lua:", 1, true) and l or "" end)
  util.assert_compiles(lu, log)
  lu.assertEquals(a[3], 3 * 1.75)
end

return TestCheck
