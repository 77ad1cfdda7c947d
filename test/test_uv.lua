-- The luv adapter (ffipar.uv) under plain luv; test/proc_uv_nvim.sh runs
-- the same scenarios (test/uv_scenario.lua) inside headless Neovim.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"
local uv = require "luv"
local uvpar = require "ffipar.uv"
local scenario = require "uv_scenario"

-- Run the loop until cond() or `seconds` (the 10 ms sleep bounds each turn).
local function wait(cond, seconds)
  local deadline = uv.hrtime() + seconds * 1e9
  local guard = uv.new_timer()
  guard:start(10, 10, function() end)
  local ok = cond()
  while not ok and uv.hrtime() < deadline do
    uv.run("once")
    ok = cond()
  end
  guard:stop()
  guard:close()
  uv.run("nowait")                              -- let the close finish
  return ok
end

-- Live objects and open descriptors once everything let go: traces may
-- hold a handle as a constant (flushed), closed handles wait for the loop.
local function settled()
  jit.flush()
  uv.run("nowait")
  return util.settled_live(), util.eventfds()
end

TestUv = {}

function TestUv:setUp()
  self.live, self.fds = settled()
end

function TestUv:tearDown()
  util.gc()
end

function TestUv:testTheLoopRunsWhileThePoolComputes()
  local r = scenario.responsive(uvpar, uv, wait, 1.0, 50)
  lu.assertTrue(r.completed)
  -- the 10 ms timer kept firing while both cores computed for ~1 s
  -- (valgrind runs one thread at a time: there the loop only has to tick)
  local least = os.getenv("FFIPAR_VALGRIND") and 1 or 10
  lu.assertTrue(r.ticks_before >= least, "timer ticks before the first result: " .. tostring(r.ticks_before))
  -- each result exactly once, right values
  lu.assertEquals(#r.done, 2)
  table.sort(r.done, function(a, b) return a[2] < b[2] end)
  lu.assertEquals({ r.done[1][1], r.done[1][2], r.done[2][1], r.done[2][2] }, { true, 1, true, 2 })
  lu.assertEquals(r.done[1][3], select(2, scenario.compute(0, 1)) and r.done[1][3])
  -- the channel's values exactly once, in order, then "closed" once
  local want = {}
  for i = 1, 50 do want[i] = i end
  lu.assertEquals(r.items, want)
  lu.assertEquals(r.closed, 1)
  lu.assertEquals(r.after, 0)
  lu.assertEquals(r.producer, { true })
  r = nil
  lu.assertEquals({ settled() }, { self.live, self.fds })
end

function TestUv:testAwaitInCoroutines()
  local log, completed = scenario.awaits(uvpar, wait)
  lu.assertTrue(completed)
  lu.assertEquals(log[1], { "sum", true, 5 })
  lu.assertEquals(log[2], { "again", true, 5 })
  lu.assertEquals(log[3][1], "error")
  lu.assertFalse(log[3][2])
  lu.assertStrContains(log[3][3], "task failed")
  lu.assertEquals({ log[4], log[5], log[6], log[7] }, { { "item", "a" }, { "item", "b" },
    { "item", nil, "closed" }, { "end" } })
end

function TestUv:testManyFuturesLeaveNothingBehind()
  local n = os.getenv("FFIPAR_VALGRIND") and 1000 or util.scale(10000)
  local right, returned, completed = scenario.many(uvpar, wait, n)
  lu.assertTrue(completed)
  lu.assertEquals(returned, n)
  lu.assertEquals(right, n)
  lu.assertEquals(util.eventfds(), self.fds)      -- closed as delivered, not at collection
  lu.assertEquals({ settled() }, { self.live, self.fds })
end

-- The last callback runs before the watch's clean-up (the poll handle and
-- the future's descriptor close after it), and the clean-up happens even
-- when the callback raises. A fake loop, so the error reaches this test
-- (plain luv ends the process on an error in a callback).
function TestUv:testTheCallbackRunsBeforeTheCleanUpWhichSurvivesItsError()
  local polls = {}
  local fake = {
    new_timer = uv.new_timer,
    new_poll = function(fd)
      local h = { fd = fd, closed = false }
      function h.start(self, _, cb) self.cb = cb end
      function h.is_closing(self) return self.closed end
      function h.close(self) self.closed = true end
      polls[#polls + 1] = h
      return h
    end,
  }
  local A = uvpar.new(fake)
  local pool = par.pool(1)
  local seen
  local w
  local f
  -- The task waits for go: still running when submit looks at it (a done
  -- one would be delivered by a timer on the real loop instead, no poll).
  local go = par.channel(1)
  f, w = A.submit(pool, function(go) assert(go:pop(10)) return 7 end, go, function(ok, v)
    seen = { ok = ok, v = v, active = w:active(), closed = polls[1].closed }
    error("boom " .. v)
  end)
  lu.assertEquals(#polls, 1)
  go:push(true)
  local deadline = par.now() + 10
  while f:status() == "running" and par.now() < deadline do par.sleep(0.001) end
  local ok, err = pcall(polls[1].cb, nil)
  lu.assertFalse(ok)
  lu.assertStrContains(tostring(err), "boom 7")
  lu.assertEquals(seen, { ok = true, v = 7, active = false, closed = false })
  lu.assertTrue(polls[1].closed)
  lu.assertFalse(w:active())
  pool:close()
  f, w = nil, nil
  util.gc()
  lu.assertEquals(select(2, settled()), self.fds)
end

function TestUv:testBatchesSharedPollsAndStop()
  local ch = par.channel(64)
  local batches, closed = {}, 0
  for i = 1, 10 do ch:push(i) end
  uvpar.on_batch(ch, function(vs, err)
    if vs then batches[#batches + 1] = vs else closed = closed + 1 end
  end, 4)
  lu.assertTrue(wait(function() return #batches == 3 end, 10))
  lu.assertEquals(batches, { { 1, 2, 3, 4 }, { 5, 6, 7, 8 }, { 9, 10 } })
  -- two watches on one future share its poll handle; each is called once
  local pool = par.pool(1)
  local f = pool:submit(function() require("ffipar").sleep(0.05) return "x" end)
  local calls = {}
  uvpar.on_done(f, function(ok, v) calls[#calls + 1] = "a" .. v end)
  uvpar.on_done(f, function(ok, v) calls[#calls + 1] = "b" .. v end)
  -- a stopped watch never calls back
  local g = pool:submit(function() require("ffipar").sleep(0.05) return 1 end)
  local w = uvpar.on_done(g, function() calls[#calls + 1] = "stopped one" end)
  lu.assertTrue(w:active())
  w:stop()
  lu.assertFalse(w:active())
  lu.assertTrue(wait(function() return #calls == 2 end, 10))
  assert(g:join(10))
  ch:close()
  lu.assertTrue(wait(function() return closed == 1 end, 10))
  wait(function() return false end, 0.05)
  table.sort(calls)
  lu.assertEquals(calls, { "ax", "bx" })
  -- a future already done (and joined) is delivered on the next turn
  local late
  uvpar.on_done(f, function(ok, v) late = v end)
  lu.assertNil(late)
  lu.assertTrue(wait(function() return late ~= nil end, 10))
  lu.assertEquals(late, "x")
  pool:close()
end

function TestUv:testMisuse()
  local pool = par.pool(1)
  local f = pool:submit(function() end)
  lu.assertErrorMsgContains("ffipar.uv.on_done: argument #1 must be a par.thread or a pool future, got nil",
    uvpar.on_done, nil, print)
  lu.assertErrorMsgContains("ffipar.uv.on_done: argument #2 (the callback) must be a function, got nil",
    uvpar.on_done, f)
  lu.assertErrorMsgContains("ffipar.uv.on_item: argument #1 must be a par.channel, got table",
    uvpar.on_item, {}, print)
  lu.assertErrorMsgContains("ffipar.uv.submit: the last argument (the callback) must be a function",
    uvpar.submit, pool, function() end)
  lu.assertErrorMsgContains("ffipar.uv.submit: argument #2 must be a function, got number",
    uvpar.submit, pool, 5, print)
  lu.assertErrorMsgContains("ffipar.uv.submit: argument #1 must be a par.pool, got nil",
    uvpar.submit, nil, print, print)
  lu.assertErrorMsgContains("ffipar.uv.on_batch: max must be an integer >= 1",
    uvpar.on_batch, par.channel(1), print, false)
  lu.assertErrorMsgContains("ffipar.uv.await: must run inside a coroutine",
    uvpar.await, pool:submit(function() require("ffipar").sleep(0.05) end))
  lu.assertErrorMsgContains("ffipar.uv.new: argument #1 must be a uv module", uvpar.new, {})
  -- errors point at the caller's line
  local ok, err = pcall(function() local w = uvpar.on_done(nil, print) return w end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_uv.lua:")
  assert(f:join(10))
  pool:close()
end

function TestUv:testADetachedThreadIsRefused()
  -- running (the descriptor is refused) and done (join is refused)
  for _, done in ipairs({ false, true }) do
    local t = par.spawn(function(d) if not d then require("ffipar").sleep(0.2) end return 1 end, done)
    if done then lu.assertTrue(util.wait_until(function() return t:status() == "done" end, 10)) end
    t:detach()
    local ok, err = pcall(uvpar.on_done, t, function() end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "ffipar.uv.on_done: t:")
    lu.assertStrContains(err, "the thread is detached")
  end
end
