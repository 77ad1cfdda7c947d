-- Workers: spawn, join, status, cancel, detach, and what crosses.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

TestThread = {}

function TestThread:tearDown()
  util.gc()
end

function TestThread:testJoinReturnsResults()
  local t = par.spawn(function(a, b) return a + b, "x", nil, { k = { 1, 2 } } end, 2, 3)
  local ok, sum, x, none, tab = t:join(10)
  lu.assertTrue(ok)
  lu.assertEquals(sum, 5)
  lu.assertEquals(x, "x")
  lu.assertNil(none)
  lu.assertEquals(tab, { k = { 1, 2 } })
  lu.assertEquals(t:status(), "done")
end

function TestThread:testJoinTwiceGivesSameResults()
  local t = par.spawn(function() return 7 end)
  lu.assertEquals({ t:join(10) }, { true, 7 })
  lu.assertEquals({ t:join(10) }, { true, 7 })
end

function TestThread:testWorkerHasItsOwnState()
  _G.ffipar_test_global = "main"
  local t = par.spawn(function()
    return rawget(_G, "ffipar_test_global"), type(require("ffi").cdef), type(require("ffipar").spawn)
  end)
  lu.assertEquals({ t:join(10) }, { true, nil, "function", "function" })
  _G.ffipar_test_global = nil
end

function TestThread:testErrorCarriesWorkerTraceback()
  local t = par.spawn(function()
    local function inner() error("deep failure") end
    inner()
  end)
  local ok, err = t:join(10)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "deep failure")
  lu.assertStrContains(err, "stack traceback")
  lu.assertStrContains(err, "in function 'inner'")
  lu.assertEquals(t:status(), "failed")
end

function TestThread:testTableErrorStaysATableWithTraceback()
  local t = par.spawn(function()
    local function inner() error({ code = 7, why = { "nested" } }) end
    inner()
  end)
  local ok, err, tb = t:join(10)
  lu.assertFalse(ok)
  lu.assertEquals(err, { code = 7, why = { "nested" } })
  lu.assertStrContains(tb, "stack traceback:")
  lu.assertStrContains(tb, "in function 'inner'")
  lu.assertEquals(t:status(), "failed")
  lu.assertEquals({ t:join(10) }, { false, err, tb })       -- joins again alike
end

function TestThread:testOtherErrorValuesCrossLikeResults()
  local a = par.array("int32_t", 1)
  local function raised(fn, ...)
    local ok, err, tb = par.spawn(fn, ...):join(10)
    lu.assertFalse(ok)
    lu.assertStrContains(tb, "stack traceback:")
    return err
  end
  lu.assertEquals(raised(function() error(42, 0) end), 42)     -- as pcall gives it
  lu.assertEquals(raised(function() error(false) end), false)
  local back = raised(function(a) a[0] = 5; error({ array = a }) end, a)
  lu.assertEquals(util.addr(back.array:ptr()), util.addr(a:ptr()))
  -- A value that cannot cross is described, with the traceback.
  local err = raised(function() error({ co = coroutine.create(print) }) end)
  lu.assertStrContains(err, "coroutine, which cannot cross")
  lu.assertStrContains(err, "stack traceback:")
end

function TestThread:testStringErrorTracebackIsAlsoTheThirdValue()
  local ok, err, tb = par.spawn(function() error("plain") end):join(10)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "plain")
  lu.assertStrMatches(tb, "^stack traceback:.*")
  lu.assertEquals(err:sub(-#tb), tb)
end

function TestThread:testTableErrorFromPoolTaskAndParallelFor()
  local pool = par.pool(2)
  local ok, err, tb = pool:submit(function() error({ code = 3 }) end):join(10)
  lu.assertFalse(ok)
  lu.assertEquals(err, { code = 3 })
  lu.assertStrContains(tb, "stack traceback:")
  local ok2, err2 = pcall(pool.parallel_for, pool, 10, function(lo) if lo == 0 then error({ at = lo }) end end)
  lu.assertFalse(ok2)
  lu.assertEquals(err2, { at = 0 })
  pool:close()
end

-- Globals of the main script do not cross; the error says so.
function TestThread:testMissingGlobalGetsAHint()
  rawset(_G, "test_thread_helper", function() return 1 end)
  local ok, err = par.spawn(function() return test_thread_helper() end):join(10)
  rawset(_G, "test_thread_helper", nil)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "attempt to call global 'test_thread_helper' (a nil value)")
  lu.assertStrContains(err, "'test_thread_helper' is a global of the spawning thread; globals do "
    .. "not cross, make it a local or an upvalue")
  lu.assertStrContains(err, "stack traceback:")
  -- No hint for a name that is no global here either.
  local _, err2 = par.spawn(function() return test_thread_nothing() end):join(10)
  lu.assertNotStrContains(err2, "global of the spawning thread")
end

function TestThread:testJoinTimesOut()
  local t = par.spawn(function() return require("ffipar").sleep(10) end)
  local v, err = t:join(0.05)
  lu.assertNil(v)
  lu.assertEquals(err, "timeout")
  lu.assertEquals(t:status(), "running")
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
end

function TestThread:testJoinPollsWithZero()
  local t = par.spawn(function() return require("ffipar").sleep(10) end)
  lu.assertEquals({ t:join(0) }, { nil, "timeout" })
  t:cancel()
  lu.assertTrue(t:join(10))
end

function TestThread:testCancelSeenInHotLoop()
  local t = par.spawn(function()
    local par = require "ffipar"
    local n = 0
    while not par.cancelled() do n = n + 1 end
    return n
  end)
  par.sleep(0.05)
  t:cancel()
  local ok, n = t:join(10)
  lu.assertTrue(ok)
  lu.assertTrue(n > 0)
end

function TestThread:testCancelledWorkerThatRaisesIsCancelled()
  local t = par.spawn(function() assert(require("ffipar").sleep(10)) end)
  t:cancel()
  lu.assertEquals({ t:join(10) }, { nil, "cancelled" })
  lu.assertEquals(t:status(), "cancelled")
end

function TestThread:testCancelledIsFalseInMain()
  lu.assertFalse(par.cancelled())
  lu.assertEquals(par.id(), 0)
end

function TestThread:testWorkerIds()
  local a = par.spawn(function() return require("ffipar").id() end)
  local b = par.spawn(function() return require("ffipar").id() end)
  local _, ia = a:join(10)
  local _, ib = b:join(10)
  lu.assertEquals(ia, a:id())
  lu.assertEquals(ib, b:id())
  lu.assertNotEquals(ia, ib)
  lu.assertTrue(ia > 0)
end

function TestThread:testDetachRefusesJoin()
  local t = par.spawn(function() return 1 end)
  t:detach()
  lu.assertErrorMsgContains("detached", t.join, t, 1)
end

function TestThread:testSpawnRefusesNonFunction()
  lu.assertErrorMsgContains("ffipar.spawn: argument #1 must be a function, got number", par.spawn, 42)
end

function TestThread:testJoinRefusesBadTimeout()
  local t = par.spawn(function() end)
  lu.assertErrorMsgContains("t:join: timeout must be a number >= 0 or nil, got -1", t.join, t, -1)
  lu.assertErrorMsgContains("timeout must be", t.join, t, "soon")
  lu.assertTrue(t:join(10))
end

function TestThread:testMisuseErrorPointsAtCaller()
  local ok, err = pcall(function() par.spawn(nil) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_thread.lua")
end

function TestThread:testSleepRefusesNegative()
  lu.assertErrorMsgContains("ffipar.sleep: seconds must be a number >= 0", par.sleep, -1)
end

function TestThread:testCpus()
  lu.assertTrue(par.cpus() >= 1)
end

function TestThread:testHotLoopsWithTraceExits()
  -- Many side exits and nested traces inside a worker, on both LuaJIT builds.
  local t = par.spawn(function(n)
    local s = 0
    for i = 1, n do
      if i % 3 == 0 then s = s + 1 elseif i % 7 == 0 then s = s - 2 else s = s + (i % 5) end
      if i % 1000 == 0 then s = s + math.floor(math.sqrt(i)) end
    end
    return s
  end, util.scale(3e6))
  local n = util.scale(3e6)
  local s = 0
  for i = 1, n do
    if i % 3 == 0 then s = s + 1 elseif i % 7 == 0 then s = s - 2 else s = s + (i % 5) end
    if i % 1000 == 0 then s = s + math.floor(math.sqrt(i)) end
  end
  lu.assertEquals({ t:join(60) }, { true, s })
end

function TestThread:testCoroutinesInsideWorker()
  local t = par.spawn(function(n)
    local gen = coroutine.wrap(function()
      for i = 1, n do coroutine.yield(i * 2) end
    end)
    local s = 0
    for _ = 1, n do s = s + gen() end
    return s
  end, 100000)
  lu.assertEquals({ t:join(30) }, { true, 100000 * 100001 })
end

function TestThread:testManyWorkersAtOnce()
  local ts = {}
  for i = 1, 16 do ts[i] = par.spawn(function(i) return i * i end, i) end
  for i = 1, 16 do lu.assertEquals({ ts[i]:join(30) }, { true, i * i }) end
end

function TestThread:testNoObjectLeaksAfterJoin()
  local before = util.settled_live()
  for _ = 1, 20 do
    local a = par.array("int32_t", 8)
    assert(par.spawn(function(a) a[0] = 1; return a end, a):join(10))
  end
  lu.assertEquals(util.live_settles(before), before)
end

function TestThread:testTostring()
  local t = par.spawn(function() end)
  t:join(10)
  lu.assertStrContains(tostring(t), "ffipar.thread")
  lu.assertStrContains(tostring(t), "(done)")
end

function TestThread:testPinnedThreadIsUnpinnedForTheNextSpawn()
  -- OS threads are reused between spawns: a worker that pins its thread
  -- must not leave later workers pinned (or par.cpus() shrunk).
  local function own_cpus()
    local ffi = require "ffi"
    pcall(ffi.cdef, "int sched_getaffinity(int pid, size_t size, void *mask);")
    local mask = ffi.new("uint8_t[128]")
    assert(ffi.C.sched_getaffinity(0, 128, mask) == 0)
    local n = 0
    for i = 0, 127 do
      local b = mask[i]
      while b > 0 do n = n + b % 2; b = math.floor(b / 2) end
    end
    return n
  end
  local all = par.cpus()
  for _ = 1, 3 do
    assert(par.spawn(function()
      local ffi = require "ffi"
      pcall(ffi.cdef, "int sched_setaffinity(int pid, size_t size, const void *mask);")
      local mask = ffi.new("uint8_t[128]")
      mask[0] = 1
      assert(ffi.C.sched_setaffinity(0, 128, mask) == 0)
    end):join(10))
  end
  util.settled_live()                        -- let the runners park again
  for _ = 1, 6 do
    local ok, cpus, own = par.spawn(function(own_cpus) return require("ffipar").cpus(), own_cpus() end,
      own_cpus):join(10)
    lu.assertTrue(ok)
    lu.assertEquals(cpus, all)
    lu.assertEquals(own, own_cpus())
  end
end

-- Thread handles cross by reference: another worker can join, poll and
-- cancel a thread, through arguments or a channel.
function TestThread:testHandleCrossesAndIsJoinedFromAnotherWorker()
  local before = util.settled_live()
  local t = par.spawn(function() require("ffipar").sleep(0.05); return 41, { x = 1 } end)
  local ok, jok, v, tab, status = par.spawn(function(t)
    local jok, v, tab = t:join(10)
    return jok, v, tab, t:status()
  end, t):join(10)
  lu.assertEquals({ ok, jok, v, tab, status }, { true, true, 41, { x = 1 }, "done" })
  lu.assertEquals({ t:join(10) }, { true, 41, { x = 1 } })    -- and here too
  -- Through a channel, cancelled from the other side.
  local ch = par.channel(2)
  local sleeper = par.spawn(function() return require("ffipar").sleep(30) end)
  assert(ch:push(sleeper))
  lu.assertTrue(par.spawn(function(ch)
    local s = ch:pop(10)
    s:cancel()
    return s:join(10)
  end, ch):join(10))
  lu.assertEquals({ sleeper:join(10) }, { true, nil, "cancelled" })
  -- Handed back from a worker, and a detached one stays detached.
  local ok2, back = par.spawn(function(t) return t end, t):join(10)
  lu.assertTrue(ok2)
  lu.assertEquals(back:id(), t:id())
  sleeper:detach()
  local ok3, err = par.spawn(function(s) return pcall(s.join, s, 1) end, sleeper):join(10)
  lu.assertTrue(ok3)
  lu.assertFalse(err)
  t, back, sleeper, ch = nil, nil, nil, nil
  lu.assertEquals(util.settled_live(), before)
end

function TestThread:testThreadCannotJoinItself()
  local ch = par.channel(1)
  local t = par.spawn(function(ch)
    local me = ch:pop(10)
    return pcall(me.join, me, 1)
  end, ch)
  assert(ch:push(t))
  local ok, jok, err = t:join(10)
  lu.assertTrue(ok)
  lu.assertFalse(jok)
  lu.assertStrContains(err, "t:join: a thread cannot join itself")
end
