-- par.semaphore: counting, exclusion under contention, bounded occupancy,
-- timeouts, cancellation, misuse, crossing.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestSemaphore = {}

function TestSemaphore:tearDown()
  util.gc()
end

function TestSemaphore:testCounts()
  local s = par.semaphore(2)
  lu.assertEquals(s:count(), 2)
  lu.assertTrue(s:acquire())
  lu.assertTrue(s:acquire(0))
  lu.assertEquals({ s:acquire(0) }, { nil, "timeout" })
  s:release(3)
  lu.assertEquals(s:count(), 3)
  s:release()
  lu.assertEquals(s:count(), 4)
  lu.assertEquals(par.semaphore():count(), 0)
  lu.assertStrContains(tostring(s), "ffipar.semaphore(4)")
end

function TestSemaphore:testBinarySemaphoreExcludesUnderContention()
  local s = par.semaphore(1)
  local count = par.array("double", 1)
  local iters = util.scale(1e6)
  local go = par.barrier(2)
  local ts = {}
  for w = 1, 2 do
    ts[w] = par.spawn(function(s, count, iters, go)
      assert(go:wait(30) ~= nil)          -- start together
      local p = count:ptr()
      for _ = 1, iters do
        s:acquire()
        p[0] = p[0] + 1
        s:release()
      end
    end, s, count, iters, go)
  end
  for w = 1, 2 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertEquals(count[0], 2 * iters)
  lu.assertEquals(s:count(), 1)
end

function TestSemaphore:testTimedAcquiresUnderContentionAreExact()
  -- As for the mutex: tiny timeouts, long holds now and then, four workers.
  local s = par.semaphore(1)
  local count = par.array("double", 1)
  local iters = util.scale(20000)
  local go = par.barrier(4)
  local ts = {}
  for w = 1, 4 do
    ts[w] = par.spawn(function(s, count, iters, go)
      assert(go:wait(30) ~= nil)
      for i = 1, iters do
        while not s:acquire(0.00001) do end
        local x = count[0]
        if i % 4 == 0 then for _ = 1, 20000 do x = x + 1e-9 end end
        count[0] = math.floor(x) + 1
        s:release()
      end
    end, s, count, iters, go)
  end
  for w = 1, 4 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertEquals(count[0], 4 * iters)
  lu.assertEquals(s:count(), 1)
end

function TestSemaphore:testAtMostKInside()
  local s = par.semaphore(2)
  local inside, most = par.atomic(0), par.atomic(0)
  local iters = util.scale(20000)
  local ts = {}
  for w = 1, 4 do
    ts[w] = par.spawn(function(s, inside, most, iters)
      for _ = 1, iters do
        assert(s:acquire(30))
        local now = inside:add(1) + 1
        local m = most:load()
        while now > m and not most:cas(m, now) do m = most:load() end
        inside:sub(1)
        s:release()
      end
    end, s, inside, most, iters)
  end
  for w = 1, 4 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertTrue(most:load() <= 2)
  lu.assertEquals(s:count(), 2)
end

function TestSemaphore:testReleaseWakesThatManyWaiters()
  local s = par.semaphore(0)
  local ts = {}
  for i = 1, 3 do ts[i] = par.spawn(function(s) return s:acquire(0.3) end, s) end
  par.sleep(0.05)
  s:release(2)
  local got, timeouts = 0, 0
  for i = 1, 3 do
    local ok, r, err = ts[i]:join(10)
    lu.assertTrue(ok)
    if r then got = got + 1 elseif err == "timeout" then timeouts = timeouts + 1 end
  end
  lu.assertEquals({ got, timeouts }, { 2, 1 })
  lu.assertEquals(s:count(), 0)
end

function TestSemaphore:testTimeout()
  local s = par.semaphore(0)
  local t0 = par.now()
  lu.assertEquals({ s:acquire(0.05) }, { nil, "timeout" })
  lu.assertTrue(par.now() - t0 >= 0.05)
end

function TestSemaphore:testCancelWakesWaiter()
  local s = par.semaphore(0)
  local t = par.spawn(function(s) return s:acquire() end, s)
  lu.assertEquals({ t:join(0.1) }, { nil, "timeout" })
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals(s:count(), 0)
end

function TestSemaphore:testMisuse()
  lu.assertErrorMsgContains("ffipar.semaphore: count must be an integer >= 0 and <= 2147483647, got -1",
    par.semaphore, -1)
  lu.assertErrorMsgContains("got 0.5", par.semaphore, 0.5)
  lu.assertErrorMsgContains("got 2147483648", par.semaphore, 2^31)
  local s = par.semaphore(2^31 - 2)
  lu.assertErrorMsgContains("s:release: count must be an integer >= 1 and <= 2147483647, got 0", s.release, s, 0)
  lu.assertErrorMsgContains("s:release: count must be an integer", s.release, s, "x")
  s:release(1)
  lu.assertErrorMsgContains("s:release: the count would exceed 2147483647 (it is 2147483647)", s.release, s)
  lu.assertEquals(s:count(), 2^31 - 1)
  lu.assertErrorMsgContains("s:acquire: expected a par.semaphore as self", s.acquire)
  lu.assertErrorMsgContains("s:acquire: timeout must be a number >= 0 or nil, got -1", s.acquire, s, -1)
  local ok, err = pcall(function() s:release(-5) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_semaphore.lua")
end

function TestSemaphore:testHandleCrossesAndNoLeak()
  local before = util.settled_live()
  local s = par.semaphore(0)
  local ok, back = par.spawn(function(s) s:release(5); return s end, s):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(util.addr(back), util.addr(s))
  lu.assertEquals(s:count(), 5)
  s, back = nil, nil
  lu.assertEquals(util.settled_live(), before)
end
