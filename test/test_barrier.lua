-- par.barrier: one true per round, reuse across rounds, timeouts with
-- withdrawal, cancellation, misuse, crossing.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestBarrier = {}

function TestBarrier:tearDown()
  util.gc()
end

function TestBarrier:testSingleThreadBarrierNeverWaits()
  local b = par.barrier(1)
  lu.assertTrue(b:wait())
  lu.assertTrue(b:wait(0))
  lu.assertEquals(b:count(), 1)
  lu.assertStrContains(tostring(b), "ffipar.barrier(1)")
end

function TestBarrier:testRoundsAreSeparatedAndOneWins()
  -- Each thread writes its slot for round r, waits, and checks that every
  -- slot holds r (nobody ran ahead); a second wait closes the round before
  -- anyone writes r + 1. Each round has exactly one winner per wait.
  local n, rounds = 3, util.scale(3000)
  local b = par.barrier(n)
  local slots = par.array("int32_t", n)
  local wins = par.array("int32_t", 2 * rounds)
  local ts = {}
  for w = 0, n - 1 do
    ts[w + 1] = par.spawn(function(b, slots, wins, w, n, rounds)
      for r = 1, rounds do
        slots[w] = r
        local won, err = b:wait(60)
        if won == nil then return "wait failed: " .. err end
        if won then par.atomics.add(wins:ptr() + 2 * (r - 1), 1) end
        for i = 0, n - 1 do
          if slots[i] ~= r then return ("round %d: slot %d holds %d"):format(r, i, slots[i]) end
        end
        won = b:wait(60)
        if won then par.atomics.add(wins:ptr() + 2 * r - 1, 1) end
      end
      return "ok"
    end, b, slots, wins, w, n, rounds)
  end
  for i = 1, n do lu.assertEquals({ ts[i]:join(120) }, { true, "ok" }) end
  for i = 0, 2 * rounds - 1 do
    if wins[i] ~= 1 then lu.fail(("wait %d had %d winners"):format(i, wins[i])) end
  end
end

function TestBarrier:testTimeoutWithdrawsFromTheRound()
  local b = par.barrier(2)
  local t0 = par.now()
  lu.assertEquals({ b:wait(0.05) }, { nil, "timeout" })
  lu.assertTrue(par.now() - t0 >= 0.05)
  lu.assertEquals({ b:wait(0) }, { nil, "timeout" })
  -- Had the main thread still counted, this worker would pass alone.
  local t = par.spawn(function(b) return b:wait(0.1) end, b)
  lu.assertEquals({ t:join(10) }, { true, nil, "timeout" })
  -- A full round still works.
  local t2 = par.spawn(function(b) return b:wait(10) end, b)
  local mine = b:wait(10)
  local ok, theirs = t2:join(10)
  lu.assertTrue(ok)
  lu.assertEquals(mine ~= theirs, true)        -- exactly one of the two is true
  lu.assertTrue(mine == true or theirs == true)
end

function TestBarrier:testCancelWakesWaiter()
  local b = par.barrier(2)
  local t = par.spawn(function(b) return b:wait() end, b)
  lu.assertEquals({ t:join(0.1) }, { nil, "timeout" })
  t:cancel()
  lu.assertEquals({ t:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals({ b:wait(0.02) }, { nil, "timeout" })   -- the worker withdrew
end

function TestBarrier:testMisuse()
  lu.assertErrorMsgContains("ffipar.barrier: count must be an integer >= 1 and <= 65535, got 0", par.barrier, 0)
  lu.assertErrorMsgContains("ffipar.barrier: count must be an integer >= 1 and <= 65535, got 1.5", par.barrier, 1.5)
  lu.assertErrorMsgContains("got 65536", par.barrier, 65536)
  lu.assertErrorMsgContains("got nil", par.barrier)
  local b = par.barrier(1)
  lu.assertErrorMsgContains("b:wait: expected a par.barrier as self (use b:method()), got nil", b.wait)
  lu.assertErrorMsgContains("b:count: expected a par.barrier as self", b.count, 5)
  lu.assertErrorMsgContains("b:wait: timeout must be a number >= 0 or nil, got x", b.wait, b, "x")
end

function TestBarrier:testHandleCrossesAndNoLeak()
  local before = util.settled_live()
  local b = par.barrier(2)
  local t = par.spawn(function(b) local won = b:wait(10); return b, won end, b)
  local mine = b:wait(10)
  local ok, back, theirs = t:join(10)
  lu.assertTrue(ok)
  lu.assertEquals(util.addr(back), util.addr(b))
  lu.assertTrue(mine ~= theirs)
  b, back, t = nil, nil, nil
  lu.assertEquals(util.settled_live(), before)
end
