-- The color gate: colors never mix, exclusive is exclusive, nesting, timeouts,
-- cancellation, string colors across workers, misuse, leaks, the JIT trace.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestGate = {}

function TestGate:tearDown()
  util.gc()
end

-- Workers of two colors hammer one gate; each marks its slot while inside
-- and checks that no worker of another color has its slot marked.
function TestGate:testColorsNeverMixAcrossWorkers()
  local g = par.gate()
  local n, rounds = 4, util.scale(3000)
  local inside = par.array("int32_t", n)
  local bad = par.array("int32_t", n)
  local ts = {}
  for w = 0, n - 1 do
    ts[#ts + 1] = par.spawn(function(g, inside, bad, w, n, rounds)
      local color = w % 2 + 1
      for _ = 1, rounds do
        assert(g:enter(color))
        inside[w] = color
        for j = 0, n - 1 do
          local v = inside[j]                -- read once: a same-color worker may leave meanwhile
          if j ~= w and v ~= 0 and v ~= color then bad[w] = bad[w] + 1 end
        end
        local s = 0
        for k = 1, 50 do s = s + k end      -- stay a little, so sections overlap
        inside[w] = 0
        g:leave()
      end
      return true
    end, g, inside, bad, w, n, rounds)
  end
  for _, t in ipairs(ts) do lu.assertEquals({ t:join(60) }, { true, true }) end
  for w = 0, n - 1 do lu.assertEquals(bad[w], 0) end
  local st = g:stats()
  lu.assertEquals(st.inside, 0)
  lu.assertEquals(st.waiting, 0)
  lu.assertEquals(st.entries, n * rounds)
end

-- Exclusive sections do read-modify-write on a plain shared counter with a
-- pause in between: any overlap would lose updates.
function TestGate:testExclusiveIsExclusive()
  local g = par.gate()
  local n, rounds = 3, util.scale(2000)
  local counter = par.array("int64_t", 1)
  local ts = {}
  for _ = 1, n do
    ts[#ts + 1] = par.spawn(function(g, counter, rounds)
      for _ = 1, rounds do
        g:run(nil, function()
          local v = counter[0]
          for _ = 1, 20 do end
          counter[0] = v + 1
        end)
      end
    end, g, counter, rounds)
  end
  for _, t in ipairs(ts) do lu.assertTrue(t:join(60)) end
  lu.assertEquals(tonumber(counter[0]), n * rounds)
end

function TestGate:testRunReturnsResultsAndLeavesOnError()
  local g = par.gate()
  lu.assertEquals({ g:run(3, function(a, b) return a + b, "x" end, 1, 2) }, { 3, "x" })
  local ok, err = pcall(g.run, g, 3, function() error("boom") end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "boom")
  lu.assertEquals(g:depth(), 0)
  -- another color gets in at once: the failed section really left
  local t = par.spawn(function(g) return g:enter(4, 5) end, g)
  lu.assertEquals({ t:join(10) }, { true, true })
end

function TestGate:testTimeoutReturnsNilTimeoutAndReopens()
  local g = par.gate()
  assert(g:enter(1))
  local t = par.spawn(function(g)
    local a, ea = g:enter(2, 0.05)
    local b, eb = g:enter(2, 0)
    return a, ea, b, eb
  end, g)
  lu.assertEquals({ t:join(10) }, { true, nil, "timeout", nil, "timeout" })
  local st = g:stats()
  lu.assertFalse(st.closed)
  lu.assertEquals(st.waiting, 0)
  -- the gate reopened: another thread of color 1 gets in without waiting
  local t2 = par.spawn(function(g) local ok = g:enter(1, 0); g:leave(); return ok end, g)
  lu.assertEquals({ t2:join(10) }, { true, true })
  g:leave()
end

function TestGate:testCancelledWaiterWithdraws()
  local g = par.gate()
  assert(g:enter(1))
  local t = par.spawn(function(g) return g:enter(2) end, g)
  lu.assertTrue(util.wait_until(function() return g:stats().waiting == 1 end, 10))
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
  local st = g:stats()
  lu.assertEquals(st.waiting, 0)
  lu.assertFalse(st.closed)
  g:leave()
  lu.assertEquals(g:stats().inside, 0)
end

function TestGate:testWaiterIsAdmittedWhenTheColorLeaves()
  local g = par.gate()
  assert(g:enter(1))
  local t = par.spawn(function(g) local ok, err = g:enter(2, 30); g:leave(); return ok, err end, g)
  lu.assertTrue(util.wait_until(function() return g:stats().waiting == 1 end, 10))
  lu.assertTrue(g:stats().closed)
  g:leave()
  lu.assertEquals({ t:join(30) }, { true, true })
  lu.assertTrue(g:stats().switches >= 1)
end

-- A busy color does not starve an exclusive thread: the gate closes.
function TestGate:testExclusiveIsServedAgainstABusyColor()
  local g = par.gate()
  local stop = par.array("int32_t", 1)
  local ts = {}
  for _ = 1, 2 do
    ts[#ts + 1] = par.spawn(function(g, stop)
      local par = require "ffipar"
      local n = 0
      while stop[0] == 0 do
        g:enter(1)
        par.sleep(0.0005)                   -- long, overlapping sections
        g:leave()
        n = n + 1
      end
      return n
    end, g, stop)
  end
  lu.assertTrue(util.wait_until(function() return g:stats().entries > 10 end, 10))
  local got = {}
  for i = 1, 5 do got[i] = g:enter(nil, 10); if got[i] then g:leave() end end
  stop[0] = 1
  for _, t in ipairs(ts) do lu.assertTrue(t:join(30)) end
  lu.assertEquals(got, { true, true, true, true, true })
end

function TestGate:testNestingRules()
  local g = par.gate()
  lu.assertTrue(g:enter(5))
  lu.assertTrue(g:enter(5, 0))            -- same color nests, never waits
  lu.assertEquals(g:depth(), 2)
  lu.assertErrorMsgContains("g:enter: this thread is already inside the gate with another color",
    g.enter, g, 6)
  lu.assertErrorMsgContains("already inside", g.enter, g, nil)
  lu.assertErrorMsgContains("already inside", g.run, g, "red", function() end)
  g:leave()
  g:leave()
  lu.assertEquals(g:depth(), 0)
  lu.assertErrorMsgContains("g:leave: this thread is not inside the gate", g.leave, g)
  -- exclusive (nil) and string colors nest the same way
  lu.assertEquals(g:run(nil, function() return g:run(nil, function() return g:depth() end) end), 2)
  lu.assertEquals(g:run("red", function() return g:run("red", function() return g:depth() end) end), 2)
  -- two gates are independent
  local h = par.gate()
  lu.assertEquals(g:run(1, function() return h:run(2, function() return "both" end) end), "both")
end

function TestGate:testStringColorsAreEqualAcrossWorkers()
  local g = par.gate()
  assert(g:enter("red"))
  local t = par.spawn(function(g)
    local same = g:enter("red", 5)
    g:leave()
    local other, err = g:enter("blue", 0.02)
    return same, other, err
  end, g)
  lu.assertEquals({ t:join(10) }, { true, true, nil, "timeout" })
  g:leave()
  -- and a string is not the integer that happens to equal it
  assert(g:enter("1"))
  lu.assertErrorMsgContains("another color", g.enter, g, 1)
  g:leave()
end

function TestGate:testMisuseErrorsNameTheArgument()
  local g = par.gate()
  lu.assertErrorMsgContains("g:enter: color must be >= 0, got -1", g.enter, g, -1)
  lu.assertErrorMsgContains("g:enter: color must be an integer, got 1.5", g.enter, g, 1.5)
  lu.assertErrorMsgContains("g:enter: color must be < 2^45", g.enter, g, 2 ^ 45)
  lu.assertErrorMsgContains("g:enter: color must be an integer, got nan", g.enter, g, 0 / 0)
  lu.assertErrorMsgContains("g:enter: color must be an integer, got inf", g.enter, g, math.huge)
  lu.assertErrorMsgContains("g:enter: color must be an integer, a string or nil, got table",
    g.enter, g, {})
  lu.assertErrorMsgContains("got boolean", g.enter, g, true)
  lu.assertErrorMsgContains("g:enter: timeout must be a number >= 0 or nil, got -1", g.enter, g, 1, -1)
  lu.assertErrorMsgContains("g:run: argument #2 must be a function, got nil", g.run, g, 1)
  lu.assertErrorMsgContains("g:run: color must be >= 0", g.run, g, -2, function() end)
  lu.assertErrorMsgContains("ffipar.gate: name must be a string or nil, got number", par.gate, 42)
  lu.assertErrorMsgContains("ffipar.atomically: argument #1 must be a function, got nil",
    par.atomically)
  lu.assertEquals(g:depth(), 0)             -- nothing was entered by the failures
  -- errors point at the caller's line
  local ok, err = pcall(function() g:enter(-1) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_gate.lua")
end

function TestGate:testAtomicallyExcludesEveryWorldSection()
  local world = par.gate("world")
  lu.assertEquals(world, par.gate("world"))
  local n, rounds = 2, util.scale(2000)
  local inside = par.array("int32_t", n)
  local bad = par.array("int32_t", 1)
  local ts = {}
  for w = 0, n - 1 do
    ts[#ts + 1] = par.spawn(function(inside, w, rounds)
      local world = require("ffipar").gate("world")
      for i = 1, rounds do
        world:run(i % 3, function() inside[w] = 1; for _ = 1, 30 do end; inside[w] = 0 end)
      end
    end, inside, w, rounds)
  end
  for _ = 1, util.scale(2000) do
    par.atomically(function()
      for w = 0, n - 1 do if inside[w] ~= 0 then bad[0] = bad[0] + 1 end end
    end)
  end
  for _, t in ipairs(ts) do lu.assertTrue(t:join(60)) end
  lu.assertEquals(bad[0], 0)
  -- atomically nests, and refuses to run inside a colored world section
  lu.assertEquals(par.atomically(function() return par.atomically(function() return 7 end) end), 7)
  lu.assertErrorMsgContains("ffipar.atomically: this thread is already inside",
    world.run, world, 1, function() par.atomically(function() end) end)
  lu.assertEquals(world:depth(), 0)
end

function TestGate:testStatsCountEntriesWaitsAndSwitches()
  local g = par.gate()
  for _ = 1, 10 do g:enter(1); g:leave() end
  g:enter(2); g:leave()
  local st = g:stats()
  lu.assertEquals(st.entries, 11)
  lu.assertEquals(st.switches, 2)          -- 0 -> 1 -> 2
  lu.assertEquals(st.waits, 0)
  lu.assertEquals(st.inside, 0)
end

function TestGate:testNoLeaks()
  local before = util.settled_live()
  for _ = 1, 10 do
    local g = par.gate()
    assert(par.spawn(function(g) return g:run("x", function() return g end) end, g):join(10))
  end
  lu.assertEquals(util.live_settles(before), before)
end

-- The hot path (enter and leave of an integer color) compiles into the
-- loop's trace: no NYI, no aborted trace.
function TestGate:testHotPathCompiles()
  if not jit or not jit.status() then return end
  local g = par.gate()
  local line
  local log = util.jit_log(function()
    line = util.next_line()
    for _ = 1, 2000 do
      g:enter(3)
      g:leave()
    end
  end)
  lu.assertNil(util.jit_problem(log, "test_gate.lua", line))
  lu.assertEquals(g:stats().entries, 2000)
end

-- Each pool task is a thread of its own: a later task on the same worker
-- does not share the exclusive (private) color of an earlier one.
function TestGate:testPoolTasksHaveTheirOwnPrivateColor()
  local pool = par.pool(1)
  local g = par.gate()
  lu.assertTrue(pool:submit(function(g) assert(g:enter(nil, 1)) end, g):join(10))  -- never leaves
  lu.assertEquals({ pool:submit(function(g) return g:enter(nil, 0.05) end, g):join(10) },
    { true, nil, "timeout" })
  pool:close()
end

-- String colors are let go when no one holds them: the shim's table stays
-- small however many distinct strings pass, and a worker's go when it ends.
function TestGate:testStringColorsAreFreedWhenNoOneHoldsThem()
  local C = require("ffipar.lib").C
  local g = par.gate()
  local before = tonumber(C.ffipar_gate_colors())
  for i = 1, 20000 do
    assert(g:enter("test-many-" .. i))
    g:leave()
  end
  local after = tonumber(C.ffipar_gate_colors())
  lu.assertTrue(after - before <= 1024, ("%d string colors kept"):format(after - before))
  lu.assertTrue(par.spawn(function(g)
    for i = 1, 5000 do assert(g:enter("test-worker-" .. i)); g:leave() end
    return true
  end, g):join(30))
  -- (<=: a state that an earlier test left closing may let go of its own)
  lu.assertTrue(util.wait_until(function() return tonumber(C.ffipar_gate_colors()) <= after end, 10),
    ("%d string colors kept after the worker ended"):format(tonumber(C.ffipar_gate_colors()) - after))
end

-- While any thread holds a string color (looked it up, or is inside with
-- it), every thread gets the same color for the string: a flood of other
-- strings in one thread does not change it.
function TestGate:testStringColorIsTheSameEverywhereWhileHeld()
  local g = par.gate()
  local go, inside = par.semaphore(0), par.semaphore(0)
  -- A worker holds "test-held-w" inside the gate until told to leave.
  local t = par.spawn(function(g, go, inside)
    assert(g:enter("test-held-w"))
    inside:release()
    assert(go:acquire(30))
    g:leave()
    return true
  end, g, go, inside)
  lu.assertTrue(inside:acquire(10))
  lu.assertTrue(g:enter("test-held-w", 5))   -- same string: same color, in with it
  g:leave()
  local gf = par.gate()
  for i = 1, 3000 do                          -- evicts this state's copy of the color
    assert(gf:enter("test-flood-" .. i, 5)); gf:leave()
  end
  lu.assertTrue(g:enter("test-held-w", 5))   -- the worker still holds it: same color
  g:leave()
  -- This thread inside g2 with "test-held-m" keeps its color through a flood.
  local g2 = par.gate()
  assert(g2:enter("test-held-m"))
  for i = 1, 3000 do assert(gf:enter("test-flood2-" .. i, 5)); gf:leave() end
  local function try(gate, color)
    local ok, r1, r2 = par.spawn(function(gate, color)
      local r1, r2 = gate:enter(color, 0.2)
      if r1 then gate:leave() end
      return r1, r2
    end, gate, color):join(10)
    lu.assertTrue(ok)
    return r1, r2
  end
  lu.assertEquals({ try(g2, "test-held-m") }, { true })
  lu.assertEquals({ try(g2, "test-other") }, { nil, "timeout" })
  g2:leave()
  go:release()
  lu.assertTrue(t:join(10))
end
