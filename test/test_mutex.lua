-- par.mutex: exclusion under contention, timeouts, cancellation, misuse,
-- with(), crossing, leaks, and the hot path compiling.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestMutex = {}

function TestMutex:tearDown()
  util.gc()
end

function TestMutex:testLockTrylockUnlock()
  local m = par.mutex()
  lu.assertTrue(m:trylock())
  lu.assertFalse(m:trylock())                 -- held, by this thread too
  lu.assertStrContains(tostring(m), "held by the main thread")
  m:unlock()
  lu.assertStrContains(tostring(m), "held by nobody")
  lu.assertTrue(m:lock())
  m:unlock()
  lu.assertTrue(m:lock(0))                      -- a free mutex, polled
  m:unlock()
end

function TestMutex:testContendedCounterIsExact()
  -- A plain read-modify-write of shared memory: exact only under the lock.
  local m = par.mutex()
  local count = par.array("double", 1)
  local iters = util.scale(1e6)
  local go = par.barrier(2)
  local ts = {}
  for w = 1, 2 do
    ts[w] = par.spawn(function(m, count, iters, go)
      assert(go:wait(30) ~= nil)          -- start together
      local p = count:ptr()
      for _ = 1, iters do
        m:lock()
        p[0] = p[0] + 1
        m:unlock()
      end
    end, m, count, iters, go)
  end
  for w = 1, 2 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertEquals(count[0], 2 * iters)
end

function TestMutex:testContendedWithMainThreadAndTrylock()
  local m = par.mutex()
  local count = par.array("double", 1)
  local iters = util.scale(2e5)
  local t = par.spawn(function(m, count, iters)
    for _ = 1, iters do
      while not m:trylock() do end
      count[0] = count[0] + 1
      m:unlock()
    end
  end, m, count, iters)
  for _ = 1, iters do
    assert(m:lock(30))
    count[0] = count[0] + 1
    m:unlock()
  end
  lu.assertTrue(t:join(120))
  lu.assertEquals(count[0], 2 * iters)
end

function TestMutex:testTimedLocksUnderContentionAreExact()
  -- Four workers on fewer cores lock with a tiny timeout and retry, and
  -- every 4th critical section is long: waiters give up all the time (the
  -- give-up path hands on wakes it may have taken), and none may be lost.
  local m = par.mutex()
  local count = par.array("double", 1)
  local gaveup = par.atomic(0)
  local iters = util.scale(20000)
  local go = par.barrier(4)             -- start together, or there is no contention
  local ts = {}
  for w = 1, 4 do
    ts[w] = par.spawn(function(m, count, gaveup, iters, go)
      assert(go:wait(30) ~= nil)
      for i = 1, iters do
        while not m:lock(0.00001) do gaveup:add(1) end
        local x = count[0]
        if i % 4 == 0 then for _ = 1, 20000 do x = x + 1e-9 end end
        count[0] = math.floor(x) + 1
        m:unlock()
      end
    end, m, count, gaveup, iters, go)
  end
  for w = 1, 4 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertEquals(count[0], 4 * iters)
  lu.assertTrue(m:trylock())
  m:unlock()
end

function TestMutex:testLockTimesOut()
  local m = par.mutex()
  m:lock()
  local t0 = par.now()
  local ok, a, b, c = par.spawn(function(m)
    local r1, e1 = m:lock(0.05)
    local r2, e2 = m:lock(0)
    return r1, e1, r2 == nil and e2
  end, m):join(10)
  lu.assertEquals({ ok, a, b, c }, { true, nil, "timeout", "timeout" })
  lu.assertTrue(par.now() - t0 >= 0.05)
  m:unlock()
  lu.assertEquals({ par.spawn(function(m) local r = m:lock(5); m:unlock(); return r end, m):join(10) },
    { true, true })
end

function TestMutex:testCancelWakesBlockedLocker()
  local m = par.mutex()
  m:lock()
  local t = par.spawn(function(m) return m:lock() end, m)
  lu.assertEquals({ t:join(0.1) }, { nil, "timeout" })   -- blocked
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
  m:unlock()
  lu.assertTrue(m:trylock())                   -- the cancelled waiter left no trace
  m:unlock()
end

function TestMutex:testCancelledWaiterPassesWakeOn()
  -- Two workers sleep on the lock; one is cancelled. The other must still
  -- get the lock when the main thread lets go.
  local m = par.mutex()
  m:lock()
  local a = par.spawn(function(m) return m:lock(10) end, m)
  local b = par.spawn(function(m) local r = m:lock(10); if r then m:unlock() end; return r end, m)
  par.sleep(0.1)
  a:cancel()
  m:unlock()
  lu.assertEquals({ a:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals({ b:join(10) }, { true, true })
end

function TestMutex:testUnlockMisuse()
  local m = par.mutex()
  lu.assertErrorMsgContains("m:unlock: the mutex is not locked by this thread (the main thread); held by nobody",
    m.unlock, m)
  local ok, id = par.spawn(function(m) m:lock(); return par.id() end, m):join(10)
  lu.assertTrue(ok)
  lu.assertErrorMsgContains("m:unlock: the mutex is not locked by this thread (the main thread); held by worker " .. id,
    m.unlock, m)
  local ok2, err = par.spawn(function(m) return pcall(m.unlock, m) end, m):join(10)
  lu.assertTrue(ok2)
  lu.assertEquals(err, false)
end

function TestMutex:testRelockIsAnErrorNotADeadlock()
  local m = par.mutex()
  m:lock()
  lu.assertErrorMsgContains("m:lock: this thread (the main thread) already holds the mutex; it is not recursive",
    m.lock, m)
  lu.assertErrorMsgContains("m:with: this thread already holds the mutex", m.with, m, function() end)
  m:unlock()
end

function TestMutex:testBadArguments()
  local m = par.mutex()
  lu.assertErrorMsgContains("m:lock: timeout must be a number >= 0 or nil, got -1", m.lock, m, -1)
  lu.assertErrorMsgContains("m:lock: timeout must be", m.lock, m, "soon")
  lu.assertErrorMsgContains("m:lock: expected a par.mutex as self (use m:method()), got nil", m.lock)
  lu.assertErrorMsgContains("m:unlock: expected a par.mutex as self", m.unlock, 3)
  lu.assertErrorMsgContains("m:trylock: expected a par.mutex as self", m.trylock, par.atomic(0))
  lu.assertErrorMsgContains("m:with: argument #1 must be a function, got nil", m.with, m)
  lu.assertTrue(m:trylock())                   -- nothing was left locked
  m:unlock()
  local ok, err = pcall(function() m:unlock() end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_mutex.lua")   -- raised at the caller's line
end

function TestMutex:testWithReturnsResultsAndUnlocks()
  local m = par.mutex()
  local a, b = m:with(function(x, y) return x + y, "held" end, 2, 3)
  lu.assertEquals({ a, b }, { 5, "held" })
  lu.assertTrue(m:trylock())
  m:unlock()
end

function TestMutex:testWithHoldsTheLock()
  local m = par.mutex()
  local ok, got = m:with(function()
    return par.spawn(function(m) return m:trylock() end, m):join(10)
  end)
  lu.assertEquals({ ok, got }, { true, false })
end

function TestMutex:testWithUnlocksAndRethrows()
  local m = par.mutex()
  local ok, err = pcall(m.with, m, function() error("inside with") end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "inside with")
  lu.assertTrue(m:trylock())
  m:unlock()
  local ok2, e2 = pcall(m.with, m, function() error({ code = 7 }) end)
  lu.assertFalse(ok2)
  lu.assertEquals(e2, { code = 7 })             -- error values pass through untouched
  lu.assertErrorMsgContains("m:with: the function released the mutex itself", m.with, m,
    function() m:unlock() end)
end

function TestMutex:testWithInCancelledWorker()
  local m = par.mutex()
  m:lock()
  local t = par.spawn(function(m) return m:with(function() return "ran" end) end, m)
  par.sleep(0.05)
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
  m:unlock()
end

function TestMutex:testHandleCrossesAndNoLeak()
  local before = util.settled_live()
  local m = par.mutex()
  local ok, back = par.spawn(function(m) m:lock(); m:unlock(); return m end, m):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(util.addr(back), util.addr(m))
  back:lock()
  lu.assertFalse(m:trylock())
  m:unlock()
  m, back = nil, nil
  lu.assertEquals(util.settled_live(), before)
end

function TestMutex:testHotLoopCompiles()
  local m = par.mutex()
  local line
  local log = util.jit_log(function()
    line = util.next_line()
    for _ = 1, 1000 do m:lock(); m:unlock() end
  end)
  lu.assertNil(util.jit_problem(log, "test_mutex.lua", line))
end

function TestMutex:testCRefusesSelfZero()
  -- 0 is the owner field's "free": the C side refuses it as a caller key.
  local C = require("ffipar.lib").C
  local m = par.mutex()
  lu.assertEquals(C.ffipar_mutex_lock(m, 0, -1), C.FFIPAR_EINVAL)
  lu.assertEquals(C.ffipar_mutex_unlock(m, 0), C.FFIPAR_EINVAL)
  lu.assertTrue(m:trylock())
  m:unlock()
end

-- A pool worker's state runs many tasks, each its own thread: a mutex that
-- task A left locked is held by A, not by the next task on the same worker.
function TestMutex:testPoolTasksAreDifferentHolders()
  local pool = par.pool(1)
  local m = par.mutex()
  local ok, a_id = pool:submit(function(m) assert(m:lock(1)); return require("ffipar").id() end, m):join(10)
  lu.assertTrue(ok)
  local ok2, r1, r2, r3, b_id = pool:submit(function(m)
    local r1, r2 = m:lock(0.05)                          -- held by A: times out
    local r3 = select(2, pcall(m.unlock, m))             -- not B's to unlock
    return r1, r2, r3, require("ffipar").id()
  end, m):join(10)
  lu.assertTrue(ok2)
  lu.assertNotEquals(b_id, a_id)
  lu.assertEquals({ r1, r2 }, { nil, "timeout" })
  lu.assertStrContains(r3, ("m:unlock: the mutex is not locked by this thread (worker %d); held by worker %d")
    :format(b_id, a_id))
  lu.assertStrContains(tostring(m), "held by worker " .. a_id)
  lu.assertFalse(m:trylock())
  pool:close()
end
