-- par.share snapshots and pool:best: the search over a shared table.
local lu = require "luaunit"
local par = require "ffipar"
local util = require "util"

TestShare = {}

local function records(n)
  local t = {}
  for i = 1, n do
    t["r" .. i] = { id = i, x = (i * 7919) % 1009, name = "n" .. i, tags = { "a", i % 3 } }
  end
  return t
end

local function score(k, v)
  return (v.x * 31 + #k) % 997 + (v.tags[2] == 1 and 0.5 or 0)
end

local function serial_best(t, f)
  local bk, bv, bs = nil, nil, -math.huge
  for k, v in pairs(t) do
    local s = f(k, v)
    if s > bs then bk, bv, bs = k, v, s end
  end
  return bk, bv, bs
end

function TestShare:setUp()
  self.pool = par.pool(2)
end

function TestShare:tearDown()
  self.pool:close()
  util.gc()
end

function TestShare:testBestIsTheSerialLoopsEntry()
  local t = records(5000)
  local sk, sv, ss = serial_best(t, score)
  local sh = par.share(t)
  lu.assertEquals(#sh, 5000)
  for _ = 1, 3 do
    local k, v, s = self.pool:best(sh, score)
    lu.assertEquals({ k, s }, { sk, ss })
    lu.assertIs(v, sv)                    -- the caller's own value object
  end
  -- a plain table: shared for the one call
  local k, v, s = self.pool:best(t, score)
  lu.assertEquals({ k, s }, { sk, ss })
  lu.assertIs(v, sv)
end

function TestShare:testTiesGoToTheFirstEntryInPairsOrder()
  local t = records(3000)
  local first = next(t)
  local k, v, s = self.pool:best(t, function() return 1 end)
  lu.assertEquals({ k, s }, { first, 1 })
  lu.assertIs(v, t[first])
  -- two entries share the best score: the one pairs meets first wins
  local order = {}
  for key in pairs(t) do order[#order + 1] = key end
  local a, b = order[2900], order[17]
  local k2 = self.pool:best(par.share(t), function(key) return (key == a or key == b) and 5 or 0 end)
  lu.assertEquals(k2, b)
  lu.assertEquals(serial_best(t, function(key) return (key == a or key == b) and 5 or 0 end), b)
end

function TestShare:testExtraArgumentsAndNoBest()
  local t = records(100)
  local k, _, s = self.pool:best(t, function(key, v, a, b, c, d, e) return v.id * a + b + c + d + e end,
    1, 2, 3, 4, 5)
  lu.assertEquals({ k, s }, { "r100", 114 })
  local k2, _, s2 = self.pool:best(t, function(key, v, a, b) return -v.id * a + b end, 2, 1)
  lu.assertEquals({ k2, s2 }, { "r1", -1 })
  lu.assertNil(self.pool:best({}, score))
  lu.assertNil(self.pool:best(t, function() return -math.huge end))
  lu.assertNil(self.pool:best(t, function() return 0 / 0 end))
end

function TestShare:testDecodedOncePerWorkerState()
  local sh = par.share(records(2000))
  for _ = 1, 10 do self.pool:best(sh, score) end
  local d = sh:decodes()
  lu.assertTrue(d >= 1 and d <= 2, "decoded " .. d .. " times by 2 workers over 10 calls")
  -- each spawned worker is a state of its own: once each, however often it looks
  for _ = 1, 3 do
    local ok, n, same = par.spawn(function(s)
      local a, b = s:get(), s:get()
      local n = 0
      for _ in pairs(a) do n = n + 1 end
      return n, a == b
    end, sh):join(10)
    lu.assertEquals({ ok, n, same }, { true, 2000, true })
  end
  lu.assertEquals(sh:decodes(), d + 3)
  -- a plain table is shared per call: decoded again every call
  local plain = par.share({ a = 1 })
  lu.assertEquals(plain:decodes(), 0)
end

function TestShare:testSnapshotIsNeverHalfSeen()
  local t = records(200)
  local sh = par.share(t)
  t.r1.x, t.r2 = 99999, nil                 -- changes after sharing
  t.extra = { id = 0, x = 1e9, name = "late", tags = {} }
  local ok, x, r2, extra = par.spawn(function(s)
    local c = s:get()
    return c.r1.x, c.r2 ~= nil, c.extra
  end, sh):join(10)
  lu.assertEquals({ ok, x, r2, extra }, { true, (1 * 7919) % 1009, true, nil })
  local copy = sh:get()                     -- the snapshot here too, not t
  lu.assertEquals(copy.r1.x, (1 * 7919) % 1009)
  lu.assertNil(copy.extra)
  local k = self.pool:best(sh, function(_, v) return v.x end)
  lu.assertTrue(k ~= "extra" and k ~= "r1")
end

function TestShare:testSharedSubTablesAndHandlesInsideASnapshot()
  local common = { w = 2 }
  local arr = par.array("double", 4)
  arr[1] = 1.5
  local sh = par.share({ a = { c = common }, b = { c = common }, arr = arr })
  local ok, same, v = par.spawn(function(s)
    local t = s:get()
    return t.a.c == t.b.c, t.arr[1]
  end, sh):join(10)
  lu.assertEquals({ ok, same, v }, { true, true, 1.5 })
  -- the handle crosses by reference through channels and tables
  local ch = par.channel(2)
  ch:push({ snap = sh })
  local got = ch:pop(0).snap
  lu.assertEquals(#got, 3)
  lu.assertEquals(got:get().a.c.w, 2)
end

function TestShare:testMisuse()
  lu.assertErrorMsgContains("ffipar.share: argument #1 must be a table", par.share, 5)
  lu.assertErrorMsgContains("ffipar.share: argument #1 has a table as a key", par.share, { [{}] = 1 })
  lu.assertErrorMsgContains('ffipar.share: argument #1["c"] is a coroutine',
    par.share, { c = coroutine.create(print) })
  local sh = par.share({ 1 })
  lu.assertErrorMsgContains("sh:get: expected a par.share as self", sh.get)
  lu.assertErrorMsgContains("sh:decodes: expected a par.share as self", sh.decodes, 3)
  local p = self.pool
  lu.assertErrorMsgContains("pool:best: argument #1 must be a table or a par.share", p.best, p, 5, score)
  lu.assertErrorMsgContains("pool:best: argument #2 must be a function", p.best, p, {}, 5)
  lu.assertErrorMsgContains("pool:best: argument #3 is a coroutine", p.best, p, { 1 }, score,
    coroutine.create(print))
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function() p:best({ x = { f = io.stdout } }, score) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('test_share.lua:%d: pool:best: argument #1["x"]["f"] is a userdata'):format(line))
  local ok2, err2 = pcall(p.best, p, { 1, 2 }, function() error("boom") end)
  lu.assertFalse(ok2)
  lu.assertStrContains(err2, "boom")
end

function TestShare:testNothingIsLeftBehind()
  local live = util.settled_live()
  do
    local sh = par.share(records(100))
    for _ = 1, 2 do
      local ok, n = par.spawn(function(s) return #s, s:get().r1.id end, sh):join(10)
      lu.assertEquals({ ok, n }, { true, 100 })
    end
    lu.assertEquals(sh:get().r2.id, 2)
  end
  lu.assertEquals(util.live_settles(live), live)
end

---- snapshots of plain values are decoded by chunks ----

function TestShare:testFirstCallIsTheSerialAnswerOnPoolsOf1To4()
  local t = records(20000)                         -- 254 chunks of 79 entries
  local sk, sv, ss = serial_best(t, score)
  local ties = function(key) return #key end       -- many ties: the first in pairs order wins
  local tk = serial_best(t, ties)
  for _, size in ipairs({ 1, 2, 4 }) do
    local p = par.pool(size)
    local sh = par.share(t)
    local k, v, s = p:best(sh, score)
    lu.assertEquals({ size, k, s }, { size, sk, ss })
    lu.assertIs(v, sv)
    lu.assertEquals({ size, (p:best(sh, ties)) }, { size, tk })
    lu.assertEquals({ size, (p:best(t, ties)) }, { size, tk })   -- shared for the one call
    -- a chunk is decoded once per state: the first call's workers decode each one once
    local states, chunks = sh:decodes()
    lu.assertTrue(states >= 1 and states <= size, size .. " workers, " .. states .. " states")
    lu.assertTrue(chunks >= 254 and chunks <= 254 * states, states .. " states, " .. chunks .. " chunks")
    p:close()
  end
end

function TestShare:testRepeatedCallsDecodeNoChunkTwiceInAState()
  local sh = par.share(records(6000))              -- 94 chunks of 64
  self.pool:best(sh, score)
  lu.assertEquals(select(2, sh:decodes()), 94)                       -- each chunk by one worker, once
  for _ = 1, 20 do self.pool:best(sh, score) end
  local states, chunks = sh:decodes()
  lu.assertTrue(states <= 2)
  lu.assertTrue(chunks <= 94 * states, chunks .. " chunks decoded by " .. states .. " states")
  -- a spawned worker's get() decodes every chunk, once, and builds the table
  local ok, n, same, id = par.spawn(function(s)
    local a = s:get()
    local n = 0
    for _ in pairs(a) do n = n + 1 end
    return n, a == s:get(), a.r77.id
  end, sh):join(10)
  lu.assertEquals({ ok, n, same, id }, { true, 6000, true, 77 })
  lu.assertEquals({ sh:decodes() }, { states + 1, chunks + 94 })
  -- not plain (a function inside): one message, decoded whole, no chunks
  local t = records(300)
  t.r1.f = print
  local fsh = par.share(t)
  lu.assertEquals(self.pool:best(fsh, score), (serial_best(t, score)))
  lu.assertEquals(select(2, fsh:decodes()), 0)
end

function TestShare:testChunkedSnapshotIsNeverHalfSeenAndEmptyOrSmall()
  local t = records(1000)
  local sh = par.share(t)
  for k, v in pairs(t) do v.x = 5000 + #k end      -- changes after sharing: never seen
  local k = self.pool:best(sh, function(_, v) return v.x end)
  local want = serial_best(records(1000), function(_, v) return v.x end)
  lu.assertEquals(k, want)
  lu.assertEquals(#sh:get(), 0)                    -- string keys
  lu.assertEquals(sh:get().r5.x, (5 * 7919) % 1009)
  lu.assertNil(self.pool:best(par.share({}), score))
  lu.assertEquals({ self.pool:best(par.share({ a = { id = 1, x = 2, tags = {} } }), function(_, v) return v.x end) },
    { "a", { id = 1, x = 2, tags = {} }, 2 })
end

---- a big table spawn argument streams: the worker decodes while the caller sends ----

local function big_records(n)
  local t = {}
  for i = 1, n do t["r" .. i] = { id = i, hist = { i, i % 7 }, name = "n" .. i } end
  return t
end

local function marks_left(t)
  for _, v in pairs(t) do
    if type(v) == "table" and getmetatable(v) ~= nil then return true end
  end
  return false
end

function TestShare:testBigSpawnArgumentsCrossExactly()
  local t = big_records(9000)                     -- 9 chunks of 1024 entries
  local arr = {}
  for i = 1, 5000 do arr[i] = { i, tostring(i) } end
  local ok, n, r8999, small, alen, a77, last = par.spawn(function(x, s, a)
    local n = 0
    for _ in pairs(x) do n = n + 1 end
    return n, x.r8999, s, #a, a[77][2], a[5000][1]
  end, t, { 1, 2 }, arr):join(10)
  lu.assertEquals({ ok, n, r8999, small, alen, a77, last }, { true, 9000, t.r8999, { 1, 2 }, 5000, "77", 5000 })
  -- an array with holes: its length (a border) counts more than its entries
  local holes = require("table.new")(10000, 0)
  for i = 1, 10000 do holes[i] = { i } end
  for i = 1, 9999, 2 do holes[i] = nil end
  lu.assertEquals(#holes, 10000)                  -- a border past 5000 entries
  local ok4, n4, h10 = par.spawn(function(a)
    local n = 0
    for _ in pairs(a) do n = n + 1 end
    return n, a[10][1]
  end, holes):join(10)
  lu.assertEquals({ ok4, n4, h10 }, { true, 5000, 10 })
  lu.assertFalse(marks_left(t))
  -- a sub-table met again in a later chunk: the value goes whole, shared stays shared
  t.r8000.also = t.r3.hist
  local ok2, same, h = par.spawn(function(x) return x.r8000.also == x.r3.hist, x.r3.hist[1] end, t):join(10)
  lu.assertEquals({ ok2, same, h }, { true, true, 3 })
  lu.assertFalse(marks_left(t))
  -- a handle deep inside: converted, by reference
  local a = par.array("double", 1)
  t.r8000.also = a
  local ok3 = par.spawn(function(x) x.r8000.also[0] = 42 end, t):join(10)
  lu.assertTrue(ok3)
  lu.assertEquals(a[0], 42)
  t.r8000.also = nil
end

function TestShare:testBigSpawnArgumentRefusedAtTheCallersLineAndNeverRun()
  local t = big_records(9000)
  t.r8500.co = coroutine.create(print)
  local ran = par.atomic(0)
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function() par.spawn(function(r, x) r:add(1) end, ran, t) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('test_share.lua:%d: ffipar.spawn: argument #3["r8500"]["co"] is a coroutine')
    :format(line))
  lu.assertFalse(marks_left(t))
  util.settled_live()                               -- the worker gave up and ended
  lu.assertEquals(ran:load(), 0)
  t.r8500.co = nil
  t.r8600.self = t                                  -- a cycle, late
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() par.spawn(function() end, t) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('test_share.lua:%d: ffipar.spawn: argument #2["r8600"]["self"] is a table '
    .. 'that contains itself'):format(line))
  lu.assertFalse(marks_left(t))
end

function TestShare:testBigSpawnArgumentsLeaveNothingBehind()
  local live = util.settled_live()
  for _ = 1, 3 do
    local t = big_records(5000)
    lu.assertTrue(par.spawn(function(x) return x.r1.id == 1 end, t):join(10))
    t.r4999.f = coroutine.create(print)
    lu.assertFalse(pcall(par.spawn, function() end, t))
  end
  lu.assertEquals(util.live_settles(live), live)
end

---- the one-call pool:best(t): the caller scores part of t itself ----

-- A table whose entries a score can tell apart (id), with plenty of equal scores.
local function pseudo_records(n, seed)
  local t, x = {}, seed
  for i = 1, n do
    x = (x * 1103515245 + 12345) % 2147483648
    t["k" .. i] = { id = i, x = x % 7, name = "n" .. i, hist = { x % 3, i } }
  end
  return t
end

-- t's keys in the order pairs gives them here (the order the tie rule
-- follows).
local function pairs_order(t)
  local order = {}
  for k in pairs(t) do order[#order + 1] = k end
  return order
end

-- pool:best's answer (k, v, s) is the serial loop's over t with score f,
-- v the caller's own value.
local function assert_serial_answer(what, t, f, k, v, s)
  local sk, sv, ss = serial_best(t, f)
  if sk == nil then
    lu.assertNil(k, what)
  else
    lu.assertEquals({ what, k, s }, { what, sk, ss })
    lu.assertIs(v, sv, what)
  end
end

-- Inside the caller only: a global the workers do not have.
local function in_caller() return rawget(_G, "TEST_SHARE_CALLER") == true end

function TestShare:testOneCallIsTheSerialLoopsEntryOnPoolsOf1To4()
  local scores = {
    function(_, v) return v.x end,                                 -- ties everywhere
    function(_, v) return v.x * 10 + v.hist[1] end,
    function(_, v) return v.x == 6 and 0 / 0 or v.x end,            -- the best class is NaN
    function(_, v) return v.id % 5 == 0 and 0 / 0 or -v.id end,
    function() return 1 end,
    function() return -math.huge end,
    function() return 0 / 0 end,
  }
  for _, size in ipairs({ 1, 2, 4 }) do
    local p = par.pool(size)
    for ti, n in ipairs({ 0, 1, 5, 300, 3000, 20000 }) do
      local t = pseudo_records(n, ti * 7 + size)
      for si, f in ipairs(scores) do
        assert_serial_answer(("pool of %d, %d entries, score %d"):format(size, n, si), t, f, p:best(t, f))
      end
    end
    p:close()
  end
end

-- Both sides score (the workers slowed down so that the caller scores
-- most), and equal best scores on either side go to the first entry in
-- pairs order.
function TestShare:testOneCallTiesAcrossTheCallersAndTheWorkersEntries()
  local t = pseudo_records(20000, 3)
  local order = pairs_order(t)
  rawset(_G, "TEST_SHARE_CALLER", true)
  local calls = 0
  local function slow_workers(k, v, a, b)
    if in_caller() then calls = calls + 1 else for _ = 1, 200 do v.id = v.id + 0 end end
    return (k == a or k == b) and 5 or 0
  end
  for _, pair in ipairs({ { 1, 19990 }, { 300, 19000 }, { 10000, 10001 }, { 19999, 20000 } }) do
    calls = 0
    local a, b = order[pair[2]], order[pair[1]]
    local k, v, s = self.pool:best(t, slow_workers, a, b)
    lu.assertEquals({ k, s }, { b, 5 })
    lu.assertIs(v, t[b])
    lu.assertTrue(calls > 0 and calls < 20000, calls .. " entries scored by the caller")
  end
  calls = 0
  lu.assertEquals(self.pool:best(t, function(k) calls = calls + (in_caller() and 1 or 0); return 1 end), order[1])
  rawset(_G, "TEST_SHARE_CALLER", nil)
end

-- Entries that cross only converted are scored by the caller, as they are:
-- a function inside, a handle, a table met twice inside one value.
function TestShare:testOneCallEntriesThatCrossConverted()
  local t = pseudo_records(5000, 11)
  local arr = par.array("double", 1)
  arr[0] = 7
  for i = 1, 5000, 97 do
    local common = { i }
    t["k" .. i].a, t["k" .. i].b = common, common             -- identity inside one value
  end
  t.k4000.f = function() return 1 end
  t.k4500.arr = arr
  local function score(_, v)
    if v.a ~= nil and v.a == v.b then return 2 + v.id * 1e-9 end
    if v.f then return v.f() end
    if v.arr then return v.arr[0] end
    return 0
  end
  for _ = 1, 3 do
    local k, v, s = self.pool:best(t, score)
    lu.assertEquals({ k, s }, { "k4500", 7 })
    lu.assertIs(v, t.k4500)
    t.k4500.arr = nil
    k, v, s = self.pool:best(t, score)
    lu.assertEquals({ k, s }, { (serial_best(t, score)) , 2 + 4948 * 1e-9 })
    lu.assertIs(v, t.k4948)
    t.k4500.arr = arr
  end
end

-- A value that cannot cross is an error at the caller's line, naming it,
-- wherever it is (scored by a worker or by the caller) and even after a
-- score failed; the same message on every run.
function TestShare:testOneCallValueThatCannotCross()
  local t = pseudo_records(8000, 5)
  local order = pairs_order(t)
  for _, at in ipairs({ 1, 2, 700, 4000, 8000 }) do
    local key = order[at]
    t[key].co = coroutine.create(print)
    for run = 1, 3 do
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() local k = self.pool:best(t, function(_, v) return v.x end) end)
      lu.assertFalse(ok)
      lu.assertEquals(err, ('test/test_share.lua:%d: pool:best: argument #1[%q]["co"] is a coroutine, '
        .. 'which cannot cross between threads'):format(line, key), "at " .. at .. ", run " .. run)
      -- a score that fails first changes nothing
      ok, err = pcall(function() return self.pool:best(t, function() error("boom") end) end)
      lu.assertStrContains(err, ('pool:best: argument #1[%q]["co"] is a coroutine'):format(key))
    end
    t[key].co = nil
  end
  t[order[5000]].self = t                                  -- the table itself, inside
  local ok, err = pcall(self.pool.best, self.pool, t, function() return 1 end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('pool:best: argument #1[%q]["self"] is a table that contains itself'):format(order[5000]))
  t[order[5000]].self = nil
  t[{}] = 1
  ok, err = pcall(self.pool.best, self.pool, t, function() return 1 end)
  lu.assertStrContains(err, "pool:best: argument #1 has a table as a key")
  lu.assertEquals(select(3, self.pool:best(pseudo_records(10, 1), function(_, v) return v.id end)), 10)
end

-- A score that fails in the caller or in a worker stops the others; the
-- error reaches the caller with its traceback; the pool goes on.
function TestShare:testOneCallScoreFailingInTheCallerOrAWorker()
  local t = pseudo_records(20000, 9)
  rawset(_G, "TEST_SHARE_CALLER", true)
  local calls = 0
  local ok, err = pcall(self.pool.best, self.pool, t, function(_, v)
    if in_caller() then calls = calls + 1; error("caller boom") end
    return v.x
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "caller boom")
  lu.assertStrContains(err, "stack traceback")
  lu.assertEquals(calls, 1)
  ok, err = pcall(self.pool.best, self.pool, t, function(_, v)
    if not in_caller() then error("worker boom") end
    for _ = 1, 100 do v.id = v.id + 0 end
    return v.x
  end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "worker boom")
  lu.assertStrContains(err, "stack traceback")
  rawset(_G, "TEST_SHARE_CALLER", nil)
  lu.assertEquals({ self.pool:best(t, function(_, v) return v.id end) }, { "k20000", t.k20000, 20000 })
end

function TestShare:testOneCallLeavesNothingBehind()
  local live = util.settled_live()
  local t = pseudo_records(3000, 2)
  local p = par.pool(2)
  for _ = 1, 3 do
    lu.assertEquals(p:best(t, function(_, v) return v.id end), "k3000")
    t.k100.co = coroutine.create(print)
    lu.assertFalse(pcall(p.best, p, t, function() return 1 end))
    t.k100.co = nil
    lu.assertFalse(pcall(p.best, p, t, function() error("x") end))
  end
  p:close()
  p = nil
  lu.assertEquals(util.live_settles(live), live)
end

-- With a checked array (check mode off), the entries are strands by their
-- number in pairs order, whoever scores them: two entries writing one slot
-- are a race on every run, and entries writing their own slots are not.
function TestShare:testOneCallStrandsOfTheRaceCheck()
  lu.assertFalse(par.check())
  local n = 5000
  local slots = par.array("int32_t", n + 1, { checked = true, name = "slots" })
  local t = pseudo_records(n, 4)
  rawset(_G, "TEST_SHARE_CALLER", true)
  for run = 1, 5 do
    local calls = 0
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(self.pool.best, self.pool, t, function(_, v, slots)
      if in_caller() then calls = calls + 1 end
      slots[0] = v.id
      return v.x
    end, slots)
    lu.assertFalse(ok, "run " .. run)
    lu.assertStrContains(err, "race on checked array 'slots' index 0: written by chunk [")
    lu.assertStrContains(err, ("of pool:best at test/test_share.lua:%d"):format(line))
    local k, _, s = self.pool:best(t, function(_, v, slots)
      if in_caller() then calls = calls + 1 end
      slots[v.id] = v.x                                   -- its own slot
      return v.id
    end, slots)
    lu.assertEquals({ k, s }, { "k" .. n, n })
    lu.assertTrue(calls > 0, "the caller scored no entry")
    lu.assertEquals(slots[77], t.k77.x)
  end
  rawset(_G, "TEST_SHARE_CALLER", nil)
end

-- More workers than this machine's second core would take: 1 to 4 seats,
-- each worker its own parts; ties across them still go to the first entry.
function TestShare:testOneCallWithSeveralWorkersTakingPart()
  local pool_module = require "ffipar.pool"
  local p = par.pool(4)
  local t = pseudo_records(20000, 8)
  local order = pairs_order(t)
  for cores = 1, 4 do
    pool_module.best_cores = cores
    for _, f in ipairs({ function(_, v) return v.x end, function(_, v) return v.x * 3 + v.hist[1] end }) do
      local sk, sv, ss = serial_best(t, f)
      local k, v, s = p:best(t, f)
      lu.assertEquals({ cores, k, s }, { cores, sk, ss })
      lu.assertIs(v, sv)
    end
    local a, b = order[15000], order[9000]
    lu.assertEquals({ cores, (p:best(t, function(k, _, a, b) return (k == a or k == b) and 1 or 0 end, a, b)) },
      { cores, b })
  end
  pool_module.best_cores = nil
  p:close()
end

-- The caller watches the CPU it gets (ffipar_cpu_now: this thread's CPU
-- time) to stop sending entries to a worker that shares its core.
function TestShare:testThreadCpuClock()
  local C = require("ffipar.lib").C
  local c0, w0 = C.ffipar_cpu_now(), par.now()
  par.sleep(0.05)
  local c1 = C.ffipar_cpu_now()
  lu.assertTrue(c1 - c0 < 0.02, "asleep: " .. (c1 - c0))
  local x = 0
  while par.now() - w0 < 0.15 do x = x + 1 end
  local c2, w2 = C.ffipar_cpu_now(), par.now()
  lu.assertTrue(c2 - c1 > 0.01 and c2 - c1 <= w2 - w0 + 0.001, ("busy: %g of %g s"):format(c2 - c1, w2 - w0))
end

-- A one-call pool:best in a worker that is cancelled returns nil,
-- "cancelled" once the workers' parts and the caller's own entries have
-- stopped.
function TestShare:testOneCallInACancelledWorker()
  local counts = par.array("int64_t", 2)           -- entries started, entries finished
  local n = 5000
  local th = par.spawn(function(counts, n)
    local par = require "ffipar"
    local pool = par.pool(2)
    local t = {}
    for i = 1, n do t["k" .. i] = { id = i } end
    local k, err = pool:best(t, function(_, v, counts)
      par.atomics.add(counts:ptr(), 1)
      local t0 = par.now()
      while par.now() - t0 < 0.002 do end        -- busy, blind to the cancel
      par.atomics.add(counts:ptr() + 1, 1)
      return v.id
    end, counts)
    local started, finished = par.atomics.load(counts:ptr()), par.atomics.load(counts:ptr() + 1)
    pool:close()
    return k, err, started, finished
  end, counts, n)
  lu.assertTrue(util.wait_until(function() return par.atomics.load(counts:ptr()) > 20 end, 10))
  th:cancel()
  local ok, k, err, started, finished = th:join(20)
  lu.assertTrue(ok, tostring(k))
  lu.assertEquals({ k, err }, { nil, "cancelled" })
  lu.assertEquals(started, finished)                 -- nothing still scoring
  lu.assertTrue(finished < n)
end

---- lazy snapshots: par.share(t, { lazy = true }), made at first use ----

local LAZY = { lazy = true }

-- The first pool:best makes the snapshot on the way (the one-call search):
-- every call gives the serial loop's entry, including ties and NaN scores,
-- on pools of 1, 2 and 4, and later calls search the snapshot made then.
function TestShare:testLazyFirstAndLaterCallsAreTheSerialLoopsEntry()
  local scores = {
    function(_, v) return v.x end,                                 -- ties everywhere
    function(_, v) return v.x * 10 + v.hist[1] end,
    function(_, v) return v.id % 5 == 0 and 0 / 0 or -v.id end,
    function() return -math.huge end,
  }
  for _, size in ipairs({ 1, 2, 4 }) do
    local p = par.pool(size)
    for ti, n in ipairs({ 0, 1, 5, 300, 3000, 20000 }) do
      local t = pseudo_records(n, ti * 5 + size)
      local sh = par.share(t, LAZY)
      lu.assertEquals(#sh, n)
      for round = 1, 2 do
        for si, f in ipairs(scores) do
          assert_serial_answer(("pool of %d, %d entries, round %d, score %d"):format(size, n, round, si), t, f,
            p:best(sh, f))
        end
      end
      lu.assertEquals(#sh, n)
      lu.assertStrContains(tostring(sh), ("ffipar.share(%d entries)"):format(n))
    end
    p:close()
  end
end

-- The snapshot is t as the first use saw it: changes before it are seen,
-- changes after it never, not even in part; each worker keeps the parts it
-- decoded in the first call (a state decodes the snapshot once).
function TestShare:testLazySnapshotIsTheTableAtItsFirstUse()
  local t = pseudo_records(20000, 4)
  local sh = par.share(t, LAZY)
  lu.assertStrContains(tostring(sh), "lazy, not made yet")
  lu.assertEquals({ sh:decodes() }, { 0, 0 })
  t.k7.x, t.k8 = 100, nil                          -- before the first use: seen
  local k = self.pool:best(sh, function(_, v) return v.x end)
  lu.assertEquals(k, "k7")
  local states, chunks = sh:decodes()
  lu.assertTrue(states >= 1 and states <= 2, states .. " states")   -- the workers that took part
  lu.assertTrue(chunks > 0)
  t.k9.x, t.k10 = 200, nil                         -- after it: never seen
  t.late = { id = 0, x = 1e9, hist = {} }
  lu.assertEquals(self.pool:best(sh, function(_, v) return v.x end), "k7")
  lu.assertEquals(self.pool:best(sh, function(k, v) return k == "late" and 1e9 or v.x end), "k7")
  local ok, x9, has8, has10, late = par.spawn(function(s)
    local c = s:get()
    return c.k9.x, c.k8 ~= nil, c.k10 ~= nil, c.late
  end, sh):join(10)
  lu.assertEquals({ ok, has8, has10, late }, { true, false, true, nil })
  lu.assertTrue(x9 ~= 200)
  lu.assertEquals(sh:get().k7.x, 100)
  lu.assertNil(sh:get().late)
  for _ = 1, 8 do self.pool:best(sh, function(_, v) return v.x + v.hist[1] end) end
  -- once per state, however many calls: the workers that took part (at
  -- least the one of the first call), the spawned state, sh:get() here
  local d = sh:decodes()
  lu.assertTrue(d >= 3 and d <= 4, d .. " states decoded it")
end

-- Any other first use makes the snapshot whole, as par.share(t) would:
-- crossing, sh:get(), check mode; an entry that crosses only converted
-- makes the first pool:best make it whole too (identity inside kept).
function TestShare:testLazyOtherFirstUsesMakeItWhole()
  local t = pseudo_records(3000, 6)
  local sh = par.share(t, LAZY)
  local ok, n = par.spawn(function(s) return #s end, sh):join(10)
  lu.assertEquals({ ok, n }, { true, 3000 })
  t.k1.x = 99
  lu.assertEquals(self.pool:best(sh, function(_, v) return v.x end) ~= "k1", true)
  local sh2 = par.share(t, LAZY)
  lu.assertEquals(sh2:get().k1.x, 99)
  t.k1.x = 0
  lu.assertEquals(self.pool:best(sh2, function(_, v) return v.x end), "k1")
  -- crossing inside a table, a table with a function and a handle: made whole there
  local arr = par.array("double", 1)
  arr[0] = 4.5
  local sh1 = par.share({ f = function() return 7 end, arr = arr, n = 1 }, LAZY)
  local ok1, f1, a1, n1 = par.spawn(function(x) local c = x.sh:get(); return c.f(), c.arr[0], #x.sh end,
    { sh = sh1 }):join(10)
  lu.assertEquals({ ok1, f1, a1, n1 }, { true, 7, 4.5, 3 })
  -- a table met twice inside one entry, and a function: made whole, shared sub-table kept
  local common = { w = 2 }
  t.k5.a, t.k5.b, t.k6.f = common, common, function() return 1 end
  local sh3 = par.share(t, LAZY)
  lu.assertEquals(self.pool:best(sh3, function(_, v) return v.id end), "k3000")
  t.k5.a = nil
  local ok3, same, f = par.spawn(function(s)
    local c = s:get()
    return c.k5.a == c.k5.b and c.k5.a ~= nil, c.k6.f()
  end, sh3):join(10)
  lu.assertEquals({ ok3, same, f }, { true, true, 1 })
  -- check mode: made whole, the search as usual
  local sh4 = par.share(pseudo_records(500, 2), LAZY)
  par.check(true)
  local ok4, k4 = pcall(self.pool.best, self.pool, sh4, function(_, v) return v.id end)
  par.check(false)
  lu.assertEquals({ ok4, k4 }, { true, "k500" })
end

-- Errors: a value that cannot cross is par.share's error at the first
-- use's line, on every use; a score that fails leaves the snapshot to be
-- made whole by the next use; the snapshot cannot cross while the call
-- that makes it runs.
function TestShare:testLazyErrors()
  lu.assertErrorMsgContains("ffipar.share: argument #1 must be a table", par.share, 5, LAZY)
  lu.assertErrorMsgContains("ffipar.share: argument #2 (options) must be a table or nil", par.share, {}, true)
  lu.assertErrorMsgContains("ffipar.share: options.lazy must be a boolean or nil, got 1", par.share, {}, { lazy = 1 })
  local t = pseudo_records(5000, 8)
  t.k4000.co = coroutine.create(print)
  local sh = par.share(t, LAZY)
  for _ = 1, 2 do
    local line = debug.getinfo(1, "l").currentline + 1
    local ok, err = pcall(function() local k = self.pool:best(sh, function(_, v) return v.x end) end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, ('test_share.lua:%d: '):format(line))
    lu.assertStrContains(err, '["k4000"]["co"] is a coroutine')
  end
  lu.assertErrorMsgContains('["k4000"]["co"] is a coroutine', sh.get, sh)
  local line = debug.getinfo(1, "l").currentline + 1
  local okc, errc = pcall(function() local th = par.spawn(function() end, { sh = sh }) end)
  lu.assertFalse(okc)
  lu.assertStrContains(errc, ('test_share.lua:%d: ffipar.spawn: a lazy par.share snapshot could not be made: '
    .. 'ffipar.share: argument #1["k4000"]["co"] is a coroutine'):format(line))
  t.k4000.co = nil
  lu.assertEquals(self.pool:best(sh, function(_, v) return v.id end), "k5000")
  -- a failing score: the next use makes it whole (t as it is then)
  local sh2 = par.share(t, LAZY)
  local ok, err = pcall(self.pool.best, self.pool, sh2, function() error("boom") end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "boom")
  t.k2.id = 1e6
  lu.assertEquals(self.pool:best(sh2, function(_, v) return v.id end), "k2")
  lu.assertEquals(sh2:get().k2.id, 1e6)
  -- crossing it from the score of the call that makes it
  local ch = par.channel(1)
  local sh3 = par.share(t, LAZY)
  local ok3, err3 = pcall(self.pool.best, self.pool, sh3, function(_, v)
    if ch:len() == 0 then ch:push(sh3) end
    return v.id
  end)
  lu.assertFalse(ok3)
  lu.assertStrContains(err3, "cannot be used while the pool:best that makes it runs")
  lu.assertEquals(self.pool:best(sh3, function(_, v) return v.id end), "k2")
  -- a score that only holds it: refused too (it crosses with the score)
  local sh4 = par.share(t, LAZY)
  local ok4, err4 = pcall(self.pool.best, self.pool, sh4, function(_, v) return sh4 and v.id end)
  lu.assertFalse(ok4)
  lu.assertStrContains(err4, "cannot be used while the pool:best that makes it runs")
  sh4:get()                                        -- made first: then it crosses
  lu.assertEquals(self.pool:best(sh4, function(_, v) return sh4 and v.id end), "k2")
end

function TestShare:testLazyLeavesNothingBehind()
  local live = util.settled_live()
  do
    local p = par.pool(2)
    for _ = 1, 3 do
      local t = pseudo_records(3000, 3)
      local sh = par.share(t, LAZY)
      lu.assertEquals(p:best(sh, function(_, v) return v.id end), "k3000")
      lu.assertEquals(p:best(sh, function(_, v) return -v.id end), "k1")
      local sh2 = par.share(t, LAZY)
      lu.assertFalse(pcall(p.best, p, sh2, function() error("x") end))
      par.share(t, LAZY)                           -- never used
    end
    p:close()
  end
  lu.assertEquals(util.live_settles(live), live)
end
