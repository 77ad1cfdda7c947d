-- Readiness descriptors: t:fd() and ch:fd() for event loops (the adapter
-- that uses them is tested in test_uv.lua; the races in test/c/fd_stress.c).
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

par.cdef "typedef struct { int32_t a, b; } test_fd_pair_t;"

TestFd = {}

function TestFd:setUp()
  self.live = util.settled_live()
end

function TestFd:tearDown()
  util.gc()
end

function TestFd:testThreadTurnsReadableOnceDone()
  local go = par.channel(1)
  local t = par.spawn(function(go) assert(go:pop(10)) return "r", 2 end, go)
  local fd = t:fd()
  lu.assertTrue(fd >= 0)
  lu.assertEquals(t:fd(), fd)                        -- made once
  lu.assertFalse(util.readable(fd, 50))              -- still running
  go:push(true)
  lu.assertTrue(util.readable(fd, 10000))
  lu.assertEquals({ t:join(0) }, { true, "r", 2 })
  lu.assertFalse(util.readable(fd, 0))               -- the join consumed it
  lu.assertEquals({ t:join(0) }, { true, "r", 2 })   -- results stay
  lu.assertFalse(util.readable(fd, 0))
end

function TestFd:testThreadDoneBeforeTheDescriptor()
  local t = par.spawn(function() return 1 end)
  lu.assertTrue(util.wait_until(function() return t:status() == "done" end, 10))
  local fd = t:fd()
  lu.assertTrue(util.readable(fd, 0))                -- made after the end: readable at once
  lu.assertEquals({ t:join(0) }, { true, 1 })
  lu.assertFalse(util.readable(fd, 0))
end

function TestFd:testThreadJoinedBeforeTheDescriptor()
  local t = par.spawn(function() return 1 end)
  assert(t:join(10))
  lu.assertFalse(util.readable(t:fd(), 20))          -- the readiness was consumed
end

function TestFd:testFailedAndCancelledThreadsAreReadable()
  local t = par.spawn(function() error("boom") end)
  lu.assertTrue(util.readable(t:fd(), 10000))
  local ok, err = t:join(0)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "boom")
  local c = par.spawn(function() assert(require("ffipar").sleep(30)) end)
  local fd = c:fd()
  c:cancel()
  lu.assertTrue(util.readable(fd, 10000))
  lu.assertEquals({ c:join(0) }, { nil, "cancelled" })
end

function TestFd:testPoolFuture()
  local pool = par.pool(2)
  local f = pool:submit(function(x) return x * 2 end, 21)
  lu.assertTrue(util.readable(f:fd(), 10000))
  lu.assertEquals({ f:join(0) }, { true, 42 })
  lu.assertFalse(util.readable(f:fd(), 0))
  pool:close()
end

-- ffipar.uv's join(0): the same outcomes as join, the readiness consumed
-- (a descriptor made afterwards never turns readable), the descriptor left
-- readable for the adapter to close.
function TestFd:testTakeIsJoinWithoutTheReset()
  local take = require("ffipar.thread").take
  lu.assertErrorMsgContains("ffipar.thread.take: expected a par.thread", take, nil)
  lu.assertErrorMsgContains("ffipar.thread.take: expected a par.thread", take, par.channel(1))
  local go = par.channel(1)
  local t = par.spawn(function(go) assert(go:pop(10)) return "r", nil, 3 end, go)
  local fd = t:fd()
  lu.assertEquals({ take(t) }, { nil, "timeout" })    -- running
  go:push(true)
  lu.assertTrue(util.readable(fd, 10000))
  lu.assertEquals({ n = select("#", take(t)), take(t) }, { n = 4, true, "r", nil, 3 })
  lu.assertTrue(util.readable(fd, 0))                -- not reset: the caller closes it
  lu.assertEquals({ n = select("#", t:join(0)), t:join(0) }, { n = 4, true, "r", nil, 3 })
  t:close_fd()
  local bad = par.spawn(function() error({ code = 7 }) end)
  lu.assertTrue(util.wait_until(function() return bad:status() ~= "running" end, 10))
  local ok, v, tb = take(bad)
  lu.assertEquals({ ok, v }, { false, { code = 7 } })
  lu.assertStrContains(tb, "stack traceback:")
  lu.assertFalse(util.readable(bad:fd(), 20))        -- consumed: a late descriptor stays quiet
  local failing = par.spawn(function() error("boom") end)
  lu.assertTrue(util.wait_until(function() return failing:status() ~= "running" end, 10))
  ok, v = take(failing)
  lu.assertFalse(ok)
  lu.assertStrContains(v, "boom")
  lu.assertEquals({ failing:join(0) }, { ok, v, v:sub((v:find("stack traceback:", 1, true))) })
end

function TestFd:testChannelReadableWhilePopWouldSucceed()
  local ch = par.channel(4)
  ch:push(1)
  ch:push(2)
  local fd = ch:fd()                                 -- items already queued
  lu.assertTrue(util.readable(fd, 0))
  lu.assertEquals(ch:fd(), fd)
  lu.assertEquals(ch:pop(0), 1)
  lu.assertTrue(util.readable(fd, 0))                -- one left
  lu.assertEquals(ch:pop(0), 2)
  lu.assertFalse(util.readable(fd, 0))               -- the pop that emptied it reset it
  lu.assertEquals({ ch:pop(0) }, { nil, "timeout" })
  lu.assertFalse(util.readable(fd, 0))
  ch:push("x")
  lu.assertTrue(util.readable(fd, 0))
  ch:close()
  lu.assertEquals(ch:pop(0), "x")
  lu.assertTrue(util.readable(fd, 0))                -- closed: pop(0) answers "closed"
  lu.assertEquals({ ch:pop(0) }, { nil, "closed" })
  lu.assertTrue(util.readable(fd, 0))
end

function TestFd:testChannelFromAWorker()
  local ch = par.channel(8, "test_fd_pair_t")
  local fd = ch:fd()
  lu.assertFalse(util.readable(fd, 0))
  local t = par.spawn(function(ch) ch:push({ 1, 2 }) end, ch)
  lu.assertTrue(util.readable(fd, 10000))
  lu.assertEquals(ch:pop(0).b, 2)
  lu.assertFalse(util.readable(fd, 0))
  assert(t:join(10))
  ch:close()
  lu.assertTrue(util.readable(fd, 0))
end

function TestFd:testBatchesAndSelectResetToo()
  local ch = par.channel(8, "int32_t")
  local fd = ch:fd()
  local a = require("ffi").new("int32_t[?]", 4, 1, 2, 3, 4)
  lu.assertEquals(ch:push_many(a, 4), 4)
  lu.assertTrue(util.readable(fd, 0))
  lu.assertEquals(ch:pop_many(a, 3), 3)
  lu.assertTrue(util.readable(fd, 0))
  lu.assertEquals({ par.select({ ch }, 0) }, { 1, 4 })
  lu.assertFalse(util.readable(fd, 0))
end

function TestFd:testMisuse()
  local t = par.spawn(function() end)
  local ch = par.channel(1)
  lu.assertErrorMsgContains("t:fd: expected a par.thread as self (use t:method()), got nil", t.fd)
  lu.assertErrorMsgContains("t:fd: expected a par.thread as self (use t:method()), got 3", t.fd, 3)
  lu.assertErrorMsgContains("ch:fd: expected a par.channel as self (use ch:method()), got nil", ch.fd)
  lu.assertErrorMsgContains("ch:fd: expected a par.channel as self", ch.fd, t)
  assert(t:join(10))
  local d = par.spawn(function() end)
  d:detach()
  lu.assertErrorMsgContains("t:fd: the thread is detached", d.fd, d)
  -- the error is at the caller's line
  local ok, err = pcall(function() local fd = t.fd() return fd end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_fd.lua:")
end

function TestFd:testDescriptorsCloseWithTheirObjects()
  util.gc()
  local before = util.eventfds()
  local pool = par.pool(2)
  for _ = 1, 3 do
    local keep = {}
    for i = 1, 100 do
      local f = pool:submit(function(i) return i end, i)
      local ch = par.channel(2)
      keep[#keep + 1] = { f, f:fd(), ch, ch:fd() }
    end
    lu.assertTrue(util.eventfds() >= before + 200)
    for _, k in ipairs(keep) do assert(k[1]:join(10)) end
    keep = nil
    util.gc()
  end
  pool:close()
  pool = nil
  lu.assertEquals(util.settled_live(), self.live)
  lu.assertEquals(util.eventfds(), before)
end

function TestFd:testPushPopWithADescriptorCompile()
  local ch = par.channel(64)
  ch:fd()
  local function loop()
    local s = 0
    for i = 1, 2000 do
      ch:push(i)
      s = s + ch:pop()
    end
    return s
  end
  local s
  local text = util.jit_log(function() s = loop() end)
  lu.assertEquals(s, 2000 * 2001 / 2)
  util.assert_compiles(lu, text)
end

function TestFd:testCloseEarly()
  local before = util.eventfds()
  local t = par.spawn(function() return 1 end)
  local ch = par.channel(2)
  t:fd()
  ch:fd()
  lu.assertEquals(util.eventfds(), before + 2)
  t:close_fd()
  ch:close_fd()
  ch:close_fd()                                      -- idempotent
  lu.assertEquals(util.eventfds(), before)           -- closed now, objects still alive
  lu.assertErrorMsgContains("t:fd: the descriptor was closed (t:close_fd())", t.fd, t)
  lu.assertErrorMsgContains("ch:fd: the descriptor was closed (ch:close_fd())", ch.fd, ch)
  lu.assertEquals({ t:join(10) }, { true, 1 })
  lu.assertTrue(ch:push(1))
  lu.assertEquals(ch:pop(0), 1)
  lu.assertErrorMsgContains("t:close_fd: expected a par.thread as self", t.close_fd)
  lu.assertErrorMsgContains("ch:close_fd: expected a par.channel as self", ch.close_fd)
end
