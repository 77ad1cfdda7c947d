-- par.cond: signal, broadcast, timeouts, cancellation, misuse, and an
-- exact hand-off between workers under contention.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestCond = {}

function TestCond:tearDown()
  util.gc()
end

function TestCond:testSignalWakesWaiter()
  local m, cv = par.mutex(), par.cond()
  local flag = par.array("int32_t", 1)
  local t = par.spawn(function(m, cv, flag)
    m:lock()
    while flag[0] == 0 do assert(cv:wait(m, 10)) end
    local v = flag[0]
    m:unlock()
    return v
  end, m, cv, flag)
  par.sleep(0.05)
  m:lock()
  flag[0] = 42
  cv:signal()
  m:unlock()
  lu.assertEquals({ t:join(10) }, { true, 42 })
end

function TestCond:testBroadcastWakesEveryWaiter()
  local m, cv = par.mutex(), par.cond()
  local state = par.array("int32_t", 2)      -- [0] go flag, [1] waiters seen
  local ts = {}
  for i = 1, 3 do
    ts[i] = par.spawn(function(m, cv, state)
      m:lock()
      state[1] = state[1] + 1
      while state[0] == 0 do assert(cv:wait(m, 10)) end
      m:unlock()
      return "woke"
    end, m, cv, state)
  end
  lu.assertTrue(util.wait_until(function()
    m:lock(); local n = state[1]; m:unlock(); return n == 3
  end, 10))
  m:lock()
  state[0] = 1
  cv:broadcast()
  m:unlock()
  for i = 1, 3 do lu.assertEquals({ ts[i]:join(10) }, { true, "woke" }) end
end

function TestCond:testSignalWithoutWaitersIsHarmless()
  local cv = par.cond()
  cv:signal()
  cv:broadcast()
  local m = par.mutex()
  m:lock()
  lu.assertEquals({ cv:wait(m, 0.01) }, { nil, "timeout" })  -- earlier signals are not kept
  m:unlock()
end

function TestCond:testTimeoutReturnsHoldingTheMutex()
  local m, cv = par.mutex(), par.cond()
  m:lock()
  local t0 = par.now()
  lu.assertEquals({ cv:wait(m, 0.05) }, { nil, "timeout" })
  lu.assertTrue(par.now() - t0 >= 0.05)
  lu.assertEquals({ cv:wait(m, 0) }, { nil, "timeout" })
  lu.assertEquals({ par.spawn(function(m) return m:trylock() end, m):join(10) }, { true, false })
  m:unlock()
end

function TestCond:testWorkerWaitWithoutSignalTimesOut()
  -- A worker's futex sleeps are cut into 50 ms slices (to notice cancel);
  -- those must not show up as wakes.
  local m, cv = par.mutex(), par.cond()
  local t = par.spawn(function(m, cv)
    m:lock()
    local r, err = cv:wait(m, 0.2)
    m:unlock()
    return r, err
  end, m, cv)
  lu.assertEquals({ t:join(10) }, { true, nil, "timeout" })
end

function TestCond:testCancelReturnsHoldingTheMutex()
  local m, cv = par.mutex(), par.cond()
  local t = par.spawn(function(m, cv)
    m:lock()
    local r, err
    repeat r, err = cv:wait(m) until not r     -- wakes may be spurious
    local held = pcall(m.unlock, m)
    return r, err, held
  end, m, cv)
  lu.assertEquals({ t:join(0.1) }, { nil, "timeout" })
  -- The worker is asleep in wait, so the mutex is free; take it so that the
  -- cancelled worker must wait for it (uncancellably) before returning.
  lu.assertTrue(m:lock(10))
  t:cancel()
  par.sleep(0.05)
  lu.assertEquals(t:status(), "running")
  m:unlock()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled", true })
end

function TestCond:testPingPongIsExact()
  -- Two workers take turns through one cond: each turn is seen exactly once.
  local m, cv = par.mutex(), par.cond()
  local turn = par.array("int32_t", 2)       -- [0] whose turn (0/1), [1] turns taken
  local rounds = util.scale(20000)
  local ts = {}
  for w = 0, 1 do
    ts[w + 1] = par.spawn(function(m, cv, turn, w, rounds)
      for _ = 1, rounds do
        m:lock()
        while turn[0] ~= w do assert(cv:wait(m, 30)) end
        turn[0] = 1 - w
        turn[1] = turn[1] + 1
        cv:signal()
        m:unlock()
      end
    end, m, cv, turn, w, rounds)
  end
  for i = 1, 2 do lu.assertTrue(ts[i]:join(120)) end
  lu.assertEquals(turn[1], 2 * rounds)
end

function TestCond:testMisuse()
  local m, cv = par.mutex(), par.cond()
  lu.assertErrorMsgContains("cv:wait: the mutex is not locked by this thread (the main thread)", cv.wait, cv, m, 1)
  lu.assertErrorMsgContains("cv:wait: argument #1 must be a par.mutex, got nil", cv.wait, cv)
  lu.assertErrorMsgContains("cv:wait: argument #1 must be a par.mutex, got ffipar.cond", cv.wait, cv, cv)
  lu.assertErrorMsgContains("cv:wait: expected a par.cond as self", cv.wait, m, m)
  lu.assertErrorMsgContains("cv:signal: expected a par.cond as self (use cv:method()), got nil", cv.signal)
  lu.assertErrorMsgContains("cv:broadcast: expected a par.cond as self", cv.broadcast, 1)
  m:lock()
  lu.assertErrorMsgContains("cv:wait: timeout must be a number >= 0 or nil, got -2", cv.wait, cv, m, -2)
  m:unlock()
  -- held by another thread is not held by this one
  assert(par.spawn(function(m) m:lock() end, m):join(10))
  lu.assertErrorMsgContains("cv:wait: the mutex is not locked by this thread", cv.wait, cv, m, 1)
end

function TestCond:testHandleCrossesAndNoLeak()
  local before = util.settled_live()
  local cv = par.cond()
  local ok, back = par.spawn(function(cv) cv:signal(); return cv end, cv):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(util.addr(back), util.addr(cv))
  cv, back = nil, nil
  lu.assertEquals(util.settled_live(), before)
end

-- cv:wait checks the holder per pool task: a later task on the same worker
-- does not hold the mutex an earlier task left locked.
function TestCond:testPoolTaskDoesNotInheritHolder()
  local pool = par.pool(1)
  local m, cv = par.mutex(), par.cond()
  lu.assertTrue(pool:submit(function(m) assert(m:lock(1)) end, m):join(10))
  local ok, err = pool:submit(function(m, cv)
    local ok, err = pcall(cv.wait, cv, m, 0.05)
    return err
  end, m, cv):join(10)
  lu.assertTrue(ok)
  lu.assertStrContains(err, "cv:wait: the mutex is not locked by this thread")
  pool:close()
end
