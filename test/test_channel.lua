-- Channels: par.channel, ch:push/pop/close/iter, #ch, typed channels, par.select.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

par.cdef "typedef struct { int64_t id; double x, y; } test_rec_t;"

TestChannel = {}

function TestChannel:setUp()
  self.live = util.settled_live()
end

function TestChannel:tearDown()
  util.gc()
end

function TestChannel:testPushPopInOrder()
  local ch = par.channel(4)
  lu.assertEquals(#ch, 0)
  lu.assertEquals(ch:cap(), 4)
  lu.assertTrue(ch:push(1))
  lu.assertTrue(ch:push(2.5))
  lu.assertEquals(#ch, 2)
  lu.assertEquals(ch:pop(0), 1)
  lu.assertEquals(ch:pop(0), 2.5)
  lu.assertEquals(#ch, 0)
end

function TestChannel:testValuesOfEveryKind()
  local ch = par.channel(16)
  local long = ("x"):rep(1000)
  local vals = { 0, -1.5, 2^53, 1 / 0, true, false, "", "short", ("y"):rep(48), ("z"):rep(49), long,
    { a = 1, b = { 2, 3 } }, 42LL, 7ULL }
  for _, v in ipairs(vals) do lu.assertTrue(ch:push(v, 0)) end
  for _, v in ipairs(vals) do
    local got = ch:pop(0)
    if type(v) == "cdata" then
      lu.assertTrue(got == v)
      lu.assertEquals(tostring(ffi.typeof(got)), tostring(ffi.typeof(v)))
    else
      lu.assertEquals(got, v)
    end
  end
  lu.assertEquals({ ch:pop(0) }, { nil, "timeout" })
end

-- a and b hold the same after a trip through a channel: numbers bit for
-- bit (NaN, -0.0), cdata by value and type (== compares a complex's
-- address), tables by contents (a key that is a table or cdata is another
-- object after the trip: matched by contents too), anything else by ==.
local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    return ffi.string(ffi.new("double[1]", a), 8) == ffi.string(ffi.new("double[1]", b), 8)
  end
  if type(a) == "cdata" then
    return tostring(a) == tostring(b) and tostring(ffi.typeof(a)) == tostring(ffi.typeof(b))
  end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do
    local bk = k
    if type(k) == "cdata" or type(k) == "table" then
      bk = nil
      for k2 in pairs(b) do if same(k, k2) then bk = k2 end end
    end
    if bk == nil or not same(v, b[bk]) then return false end
  end
  local na, nb = 0, 0
  for _ in pairs(a) do na = na + 1 end
  for _ in pairs(b) do nb = nb + 1 end
  return na == nb
end

-- A table crosses as string.buffer encodes it when its keys and values are
-- all scalars, through wire.plain when one is a table, through the codec
-- when one is cdata or a function: each shape, in each place (array part,
-- t[0], hash part, key), comes back as it went in.
function TestChannel:testTablesOfEveryShapeRoundTrip()
  local ch = par.channel(4)
  local t0 = { 1, 2 }
  t0[0] = "zero"
  local shapes = { {}, { 1, 2, 3 }, t0, { 1, nil, 3 }, { a = 1, b = "x", c = true, d = false },
    { 1.5, -0.0, 1 / 0, 0 / 0, 2^53, x = "y" }, { [true] = 1, [2.5] = "k", [-1] = 0 },
    { ("s"):rep(191), ("s"):rep(8128) }, { 1, { 2 } }, { a = { b = { c = 1 } } }, { [{ 1 }] = 2 },
    { 1LL, 2 }, { x = 2ULL }, { [3LL] = "k" }, { ffi.new("complex", 1, 2) }, { n = 1, f = math.max } }
  local z = { 1 }
  z[0] = 5LL
  shapes[#shapes + 1] = z
  for i, t in ipairs(shapes) do
    lu.assertTrue(ch:push(t, 0))
    local got = ch:pop(0)
    lu.assertTrue(same(t, got), "shape " .. i)
    if t[0] ~= nil then lu.assertTrue(same(t[0], got[0]), "shape " .. i .. ": t[0]") end
  end
end

-- Tables of 1 to 5 numbers at keys 1..n cross as the numbers (no
-- encoding): each value bit for bit, the table's length and nothing else;
-- a table that only looks like one (a sixth number, a hole, t[0], another
-- key, the keys in the hash part beside another key, a string, a metatable)
-- crosses whole the other way.
function TestChannel:testSmallNumberTablesCrossExactly()
  local ch = par.channel(64)
  local function check(got, want, what)
    lu.assertEquals(type(got), "table", what)
    lu.assertIsNil(getmetatable(got), what)
    lu.assertTrue(same(want, got), what)
    local n = 0
    for _ in pairs(want) do n = n + 1 end
    if want[#want + 1] == nil and rawget(want, #want) ~= nil and n == #want then   -- a sequence
      lu.assertEquals(#got, #want, what .. ": length")
    end
  end
  local specials = { 0 / 0, -0.0, 1 / 0, -1 / 0, 2^53 + 2, -2^63, 0.1, 5e-324, 1, -7 }
  local tuples = {}
  for n = 1, 5 do
    for i = 1, #specials do
      local t = {}
      for j = 1, n do t[j] = specials[(i + j) % #specials + 1] end
      tuples[#tuples + 1] = t
    end
  end
  local hashed = {}                                  -- 1 and 2 in the hash part, then x
  hashed[2] = 20; hashed.x = 1; hashed[1] = 10
  local mt = setmetatable({ 1, 2 }, { __index = function() return 0 end })
  local near = { { 1, 2, 3, 4, 5, 6 }, { 1, nil, 3 }, { [0] = 0, 1, 2 }, { 1, 2, x = 3 },
    { [1] = 5, x = 1 }, hashed, { 1, "2" }, { 1, true }, { 1, { 2 } }, mt }
  for _, list in ipairs({ tuples, near }) do
    for i = 1, #list, 16 do
      for j = i, math.min(i + 15, #list) do lu.assertTrue(ch:push(list[j], 0)) end
      for j = i, math.min(i + 15, #list) do check(ch:pop(0), list[j], "table " .. j) end
    end
  end
  -- through a worker, and through select (which pops into an item of its own)
  local t = par.spawn(function(ch, tuples)
    for i = 1, #tuples do assert(ch:push(tuples[i])) end
    ch:close()
  end, ch, tuples)
  for i = 1, #tuples do
    local got = i % 2 == 0 and select(2, par.select({ ch }, 10)) or ch:pop(10)
    check(got, tuples[i], "from the worker, table " .. i)
  end
  lu.assertTrue(t:join(10))
end

-- A table's integer keys can sit in LuaJIT's hash part, after another key
-- (then #t and a look after #t do not see that key): a sub-table shared
-- there still crosses once, as one table. Such tables come from some
-- orders of insertion: the test looks for one.
function TestChannel:testKeysBesideTheArrayPartAreSeen()
  local ch = par.channel(4)
  local s = { shared = true }
  local function missed(t, n)          -- #t is n, and a look after n finds nothing more
    return #t == n and next(t, n) == nil and next(t) ~= nil
  end
  local rng = 12345
  local function rand(m) rng = (rng * 1103515245 + 12345) % 2147483648; return rng % m + 1 end
  local found, names
  for _ = 1, 20000 do
    local n = rand(9)
    local keys = {}
    for i = 1, n do keys[i] = i end
    local a, b = "a" .. rand(1000), "b" .. rand(1000)
    keys[n + 1], keys[n + 2] = a, b
    for i = #keys, 2, -1 do local j = rand(i); keys[i], keys[j] = keys[j], keys[i] end
    local t = {}
    for _, k in ipairs(keys) do t[k] = type(k) == "number" and k or s end
    if missed(t, n) then
      found, names = t, { a, b }
      break
    end
  end
  lu.assertNotNil(found, "no table found with a key the look after #t misses")
  ch:push(found)
  local got = ch:pop(0)
  lu.assertEquals(#got, #found)
  for i = 1, #found do lu.assertEquals(got[i], i) end
  lu.assertTrue(got[names[1]].shared)
  lu.assertIs(got[names[1]], got[names[2]])
  -- 1 in the hash part, after the other key
  local one
  for i = 1, 1000 do
    local t = { [1] = 5 }
    t["x" .. i] = { s, s }
    if missed(t, 1) then one = t break end
  end
  lu.assertNotNil(one, "no { [1] = 5, x = ... } with x first")
  local x
  for k in pairs(one) do if k ~= 1 then x = k end end
  ch:push(one)
  got = ch:pop(0)
  lu.assertEquals(got[1], 5)
  lu.assertIs(got[x][1], got[x][2])
end

function TestChannel:testNaNCrosses()
  local ch = par.channel(1)
  ch:push(0 / 0)
  local v = ch:pop(0)
  lu.assertTrue(v ~= v)
end

function TestChannel:testFullPushTimesOut()
  local ch = par.channel(2)
  lu.assertTrue(ch:push("a"))
  lu.assertTrue(ch:push("b"))
  lu.assertEquals({ ch:push("c", 0) }, { nil, "timeout" })
  lu.assertEquals({ ch:push("c", 0.05) }, { nil, "timeout" })
  lu.assertEquals(#ch, 2)
end

function TestChannel:testCapacityOne()
  local ch = par.channel(1)
  lu.assertTrue(ch:push(1))
  lu.assertEquals({ ch:push(2, 0) }, { nil, "timeout" })
  lu.assertEquals(ch:pop(0), 1)
  lu.assertTrue(ch:push(3, 0))
  lu.assertEquals(#ch, 1)
  lu.assertEquals(ch:pop(0), 3)
end

function TestChannel:testOddCapacityWrapsAround()
  local ch = par.channel(3)
  for i = 1, 100 do
    lu.assertTrue(ch:push(i, 0))
    lu.assertTrue(ch:push(-i, 0))
    lu.assertEquals(ch:pop(0), i)
    lu.assertEquals(ch:pop(0), -i)
  end
end

function TestChannel:testEmptyPopTimesOut()
  local ch = par.channel(2)
  lu.assertEquals({ ch:pop(0) }, { nil, "timeout" })
  lu.assertEquals({ ch:pop(0.05) }, { nil, "timeout" })
end

function TestChannel:testCloseDrainsThenReportsClosed()
  local ch = par.channel(4)
  ch:push(1)
  ch:push("two")
  ch:close()
  ch:close()                                     -- idempotent
  lu.assertTrue(ch:closed())
  lu.assertEquals({ ch:push(3) }, { nil, "closed" })
  lu.assertEquals(ch:pop(), 1)
  lu.assertEquals(ch:pop(), "two")
  lu.assertEquals({ ch:pop() }, { nil, "closed" })
  lu.assertEquals({ ch:pop(0) }, { nil, "closed" })
end

function TestChannel:testIterUntilClosed()
  local ch = par.channel(8)
  for i = 1, 5 do ch:push(i) end
  ch:close()
  local got = {}
  for v in ch:iter() do got[#got + 1] = v end
  lu.assertEquals(got, { 1, 2, 3, 4, 5 })
end

function TestChannel:testTostring()
  local ch = par.channel(3)
  ch:push(1)
  lu.assertStrContains(tostring(ch), "ffipar.channel: 1/3")
  ch:close()
  lu.assertStrContains(tostring(ch), "closed")
  lu.assertStrContains(tostring(par.channel(2, "test_rec_t")), "ffipar.channel<test_rec_t>: 0/2")
end

---- misuse ----

function TestChannel:testBadCapacity()
  lu.assertErrorMsgContains("ffipar.channel: capacity must be an integer >= 1", par.channel, 0)
  lu.assertErrorMsgContains("capacity must be an integer >= 1", par.channel, -3)
  lu.assertErrorMsgContains("capacity must be an integer >= 1", par.channel, 1.5)
  lu.assertErrorMsgContains("capacity must be an integer >= 1", par.channel, "8")
  lu.assertErrorMsgContains("capacity must be an integer >= 1", par.channel, nil)
  lu.assertErrorMsgContains("<= 16777216", par.channel, 2^25)
  par.cdef "typedef struct { char b[4096]; } test_page_t;"
  lu.assertErrorMsgContains("ffipar.channel: capacity 1000000 of 4096-byte 'test_page_t' items is too large",
    par.channel, 1e6, "test_page_t")
end

function TestChannel:testBadCtype()
  lu.assertErrorMsgContains("ffipar.channel: unknown ctype 'no_such_t'", par.channel, 4, "no_such_t")
  lu.assertErrorMsgContains("ffipar.channel: ctype must be a type name", par.channel, 4, 42)
  lu.assertErrorMsgContains("has no fixed size", par.channel, 4, "void")
  lu.assertErrorMsgContains("is a pointer", par.channel, 4, "int *")
end

function TestChannel:testErrorIsRaisedAtTheCaller()
  local ok, err = pcall(function() par.channel(0) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_channel.lua")
  local ch = par.channel(1)
  ok, err = pcall(function() ch:push(nil) end)
  lu.assertStrContains(err, "test_channel.lua")
end

function TestChannel:testPushNilIsRefused()
  local ch = par.channel(2)
  lu.assertErrorMsgContains("ch:push: cannot push nil", ch.push, ch, nil)
  lu.assertEquals(#ch, 0)
end

function TestChannel:testUncrossableValuesAreRefused()
  local ch = par.channel(2)
  lu.assertErrorMsgContains("ch:push: value #1 is a coroutine", ch.push, ch, coroutine.create(print))
  lu.assertErrorMsgContains("value #1 is ordinary cdata", ch.push, ch, ffi.new("int[3]"))
  lu.assertErrorMsgContains("value #1[\"f\"] is a coroutine", ch.push, ch, { f = coroutine.create(print) })
  lu.assertEquals(#ch, 0)
  lu.assertEquals(util.settled_live(), self.live + 1)   -- no message left behind
end

function TestChannel:testBadTimeout()
  local ch = par.channel(2)
  lu.assertErrorMsgContains("ch:pop: timeout must be a number >= 0 or nil", ch.pop, ch, -1)
  lu.assertErrorMsgContains("ch:push: timeout must be a number >= 0 or nil", ch.push, ch, 1, "soon")
end

function TestChannel:testSelectMisuse()
  lu.assertErrorMsgContains("ffipar.select: argument #1 must be a non-empty list", par.select, {})
  lu.assertErrorMsgContains("ffipar.select: argument #1 must be a non-empty list", par.select, 3)
  lu.assertErrorMsgContains("ffipar.select: item 2 is not a channel", par.select, { par.channel(1), {} })
end

---- typed channels ----

function TestChannel:testTypedRecordsAreCopied()
  local ch = par.channel(4, "test_rec_t")
  local r = ffi.new("test_rec_t", 7, 1.5, 2.5)
  lu.assertTrue(ch:push(r))
  r.id = 8                                       -- the channel holds a copy
  lu.assertTrue(ch:push({ 9, 3, 4 }))           -- a table initializer
  local a = ch:pop(0)
  lu.assertTrue(ffi.istype("test_rec_t", a))
  lu.assertEquals({ tonumber(a.id), a.x, a.y }, { 7, 1.5, 2.5 })
  local into = ffi.new("test_rec_t")
  lu.assertTrue(ch:pop(0, into) == into)
  lu.assertEquals(tonumber(into.id), 9)
  lu.assertEquals({ ch:pop(0) }, { nil, "timeout" })
  local arr = ffi.new("test_rec_t[2]")
  arr[1].id = 11
  lu.assertTrue(ch:push(arr + 1))                -- a pointer to one: its item is copied
  lu.assertEquals(tonumber(ch:pop(0).id), 11)
end

function TestChannel:testTypedScalars()
  local d = par.channel(4, "double")
  d:push(2.25)
  lu.assertEquals(d:pop(0), 2.25)
  local i = par.channel(4, ffi.typeof("int64_t"))
  i:push(2^40 + 1)
  local v = i:pop(0)
  lu.assertTrue(v == 2^40 + 1)
  local u = par.channel(2, "uint8_t")
  u:push(255)
  lu.assertEquals(u:pop(0), 255)
end

function TestChannel:testTypedMisuse()
  local ch = par.channel(2, "test_rec_t")
  lu.assertErrorMsgContains("ch:push: expected test_rec_t", ch.push, ch, "nope")
  lu.assertErrorMsgContains("ch:push: cannot push nil", ch.push, ch, nil)
  lu.assertErrorMsgContains("ch:pop: argument #2 (into) must be a test_rec_t cdata, got int [2]", ch.pop, ch, 0, ffi.new("int[2]"))
  local d = par.channel(2, "double")
  lu.assertErrorMsgContains("ch:push: expected double, got string", d.push, d, "1")
end

function TestChannel:testTypedBatch()
  local ch = par.channel(8, "test_rec_t")
  local src = ffi.new("test_rec_t[?]", 20)
  for i = 0, 19 do src[i].id = i end
  local n = ch:push_many(src, 20)
  lu.assertEquals(n, 8)
  local dst = par.array("test_rec_t", 20)
  lu.assertEquals(ch:pop_many(dst, 20, 0), 8)
  lu.assertEquals(ch:push_many(src, 12, 0, 8), 8)
  lu.assertEquals(ch:pop_many(dst, 12, 0, 8), 8)
  for i = 0, 15 do lu.assertEquals(tonumber(dst[i].id), i) end
  lu.assertEquals({ ch:pop_many(dst, 4, 0) }, { nil, "timeout" })
end

function TestChannel:testTypedThroughWorkers()
  local ch = par.channel(16, "test_rec_t")
  local n = util.scale(20000)
  local t = par.spawn(function(ch, n)
    local ffi = require "ffi"
    local r = ffi.new("test_rec_t")
    for i = 1, n do r.id = i; r.x = i * 0.5; assert(ch:push(r)) end
    ch:close()
  end, ch, n)
  local count, sum, sx = 0, 0, 0
  for r in ch:iter() do count = count + 1; sum = sum + tonumber(r.id); sx = sx + r.x end
  lu.assertTrue(t:join(30))
  lu.assertEquals(count, n)
  lu.assertEquals(sum, n * (n + 1) / 2)
  lu.assertEquals(sx, n * (n + 1) / 4)
end

---- across workers ----

local function producer(ch, id, n)
  for i = 1, n do assert(ch:push(id * 1e6 + i)) end
  return n
end

local function consumer(ch)
  local count, sum = 0, 0
  for v in ch:iter() do count = count + 1; sum = sum + v end
  return count, sum
end

function TestChannel:testFourProducersFourConsumersExactlyOnce()
  local ch = par.channel(64)
  local n = util.scale(20000)
  local ps, cs = {}, {}
  for c = 1, 4 do cs[c] = par.spawn(consumer, ch) end
  for p = 1, 4 do ps[p] = par.spawn(producer, ch, p, n) end
  for p = 1, 4 do lu.assertEquals({ ps[p]:join(60) }, { true, n }) end
  ch:close()
  local count, sum = 0, 0
  for c = 1, 4 do
    local ok, k, s = cs[c]:join(60)
    lu.assertTrue(ok)
    count, sum = count + k, sum + s
  end
  local want = 0
  for p = 1, 4 do want = want + p * 1e6 * n + n * (n + 1) / 2 end
  lu.assertEquals(count, 4 * n)
  lu.assertEquals(sum, want)
end

function TestChannel:testStringsAndTablesExactlyOnce()
  local ch = par.channel(8)
  local n = util.scale(2000)
  local t = par.spawn(function(ch, n)
    for i = 1, n do
      assert(ch:push(i % 2 == 0 and tostring(i) or { i = i, pad = ("p"):rep(60) }))
    end
    ch:close()
  end, ch, n)
  local sum = 0
  for v in ch:iter() do sum = sum + (type(v) == "table" and v.i or tonumber(v)) end
  lu.assertTrue(t:join(30))
  lu.assertEquals(sum, n * (n + 1) / 2)
end

function TestChannel:testCloseWakesBlockedConsumersAndProducers()
  local empty, full = par.channel(1), par.channel(1)
  full:push(0)
  local cs, ps = {}, {}
  for i = 1, 3 do
    cs[i] = par.spawn(function(ch) return ch:pop(30) end, empty)
    ps[i] = par.spawn(function(ch, i) return ch:push(i, 30) end, full, i)
  end
  par.sleep(0.05)
  empty:close()
  full:close()
  for i = 1, 3 do
    lu.assertEquals({ cs[i]:join(10) }, { true, nil, "closed" })
    lu.assertEquals({ ps[i]:join(10) }, { true, nil, "closed" })
  end
  lu.assertEquals(full:pop(0), 0)
end

function TestChannel:testCloseRacingWithProducersLosesNothing()
  -- Every push that returned true is popped, whatever the timing of close.
  for round = 1, util.scale(20) do
    local ch = par.channel(4)
    local ps = {}
    for p = 1, 3 do
      ps[p] = par.spawn(function(ch)
        local ok = 0
        for i = 1, 1000 do
          if not ch:push(1, 10) then break end
          ok = ok + 1
        end
        return ok
      end, ch)
    end
    local c = par.spawn(consumer, ch)
    par.sleep(0.001 * (round % 5))
    ch:close()
    local pushed = 0
    for p = 1, 3 do
      local ok, k = ps[p]:join(30)
      lu.assertTrue(ok)
      pushed = pushed + k
    end
    local ok, count = c:join(30)
    lu.assertTrue(ok)
    lu.assertEquals(count, pushed)
  end
end

function TestChannel:testChannelCrossesIntoWorkers()
  local ch = par.channel(4)
  local t = par.spawn(function(ch) local inner = ch:pop(10); inner:push("from worker"); return #inner end, ch)
  local inner = par.channel(2)
  ch:push(inner)                                  -- a channel through a channel
  lu.assertEquals({ t:join(10) }, { true, 1 })
  lu.assertEquals(inner:pop(0), "from worker")
end

function TestChannel:testArrayThroughChannelIsTheSameMemory()
  local ch = par.channel(2)
  local a = par.array("int32_t", 8)
  local t = par.spawn(function(ch)
    local ffi = require "ffi"
    local a = ch:pop(10)
    a[3] = 33
    return tonumber(ffi.cast("intptr_t", a:ptr()))
  end, ch)
  ch:push(a)
  local ok, addr = t:join(10)
  lu.assertTrue(ok)
  lu.assertEquals(addr, util.addr(a:ptr()))
  lu.assertEquals(a[3], 33)
end

function TestChannel:testTypedChannelCrossesAndKeepsItsType()
  local ch = par.channel(2, "test_rec_t")
  local t = par.spawn(function(ch) ch:push({ 5, 6, 7 }); return tostring(ch) end, ch)
  local ok, s = t:join(10)
  lu.assertTrue(ok)
  lu.assertStrContains(s, "ffipar.channel<test_rec_t>")
  lu.assertEquals(ch:pop(0).y, 7)
end

---- select ----

function TestChannel:testSelectReturnsTheReadyChannel()
  local a, b = par.channel(2), par.channel(2, "double")
  b:push(4.5)
  lu.assertEquals({ par.select({ a, b }, 0) }, { 2, 4.5 })
  a:push("x")
  lu.assertEquals({ par.select({ a, b }, 0) }, { 1, "x" })
  lu.assertEquals({ par.select({ a, b }, 0) }, { nil, "timeout" })
  lu.assertEquals({ par.select({ a, b }, 0.02) }, { nil, "timeout" })
end

function TestChannel:testSelectTypedRecord()
  local a, b = par.channel(2), par.channel(2, "test_rec_t")
  b:push({ 1, 2, 3 })
  local i, r = par.select({ a, b }, 0)
  lu.assertEquals(i, 2)
  lu.assertTrue(ffi.istype("test_rec_t", r))
  lu.assertEquals(r.y, 3)
end

function TestChannel:testSelectPrefersValuesOverClosed()
  local a, b = par.channel(2), par.channel(2)
  a:close()
  b:push(9)
  lu.assertEquals({ par.select({ a, b }, 0) }, { 2, 9 })
  lu.assertEquals({ par.select({ a, b }, 0) }, { 1, nil, "closed" })
end

function TestChannel:testSelectWakesOnPushFromWorker()
  local chs = { par.channel(1), par.channel(1), par.channel(1) }
  local t = par.spawn(function(ch) require("ffipar").sleep(0.05); return ch:push("late") end, chs[3])
  lu.assertEquals({ par.select(chs, 30) }, { 3, "late" })
  lu.assertTrue(t:join(10))
end

function TestChannel:testSelectWakesOnClose()
  local chs = { par.channel(1), par.channel(1) }
  local t = par.spawn(function(ch) require("ffipar").sleep(0.05); ch:close() end, chs[2])
  lu.assertEquals({ par.select(chs, 30) }, { 2, nil, "closed" })
  lu.assertTrue(t:join(10))
end

function TestChannel:testSelectManyChannelsExactlyOnce()
  -- 20 channels (more than the C side keeps on its stack), 2 producers each
  -- pushing to all, one selecting consumer.
  local chs = {}
  for i = 1, 20 do chs[i] = par.channel(2) end
  local n = util.scale(500)
  local ps = {}
  for p = 1, 2 do
    ps[p] = par.spawn(function(chs, n)
      for i = 1, n do assert(chs[i % #chs + 1]:push(i, 30)) end
    end, chs, n)
  end
  local sum = 0
  for _ = 1, 2 * n do
    local i, v = par.select(chs, 30)
    lu.assertNotNil(i)
    sum = sum + v
  end
  for p = 1, 2 do lu.assertTrue(ps[p]:join(30)) end
  lu.assertEquals(sum, n * (n + 1))
end

---- cancellation ----

function TestChannel:testCancelBlockedPopPushAndSelect()
  local empty, full = par.channel(1), par.channel(1)
  full:push(1)
  local ts = {
    par.spawn(function(ch) return ch:pop() end, empty),
    par.spawn(function(ch) return ch:push(2) end, full),
    par.spawn(function(a, b) return require("ffipar").select({ a, b }) end, empty, par.channel(1)),
    par.spawn(function(ch) for v in ch:iter() do end end, empty),
  }
  par.sleep(0.05)
  for _, t in ipairs(ts) do t:cancel() end
  lu.assertEquals({ ts[1]:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals({ ts[2]:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals({ ts[3]:join(10) }, { true, nil, "cancelled" })
  lu.assertEquals({ ts[4]:join(10) }, { nil, "cancelled" })
  lu.assertEquals(#full, 1)
  -- the channels still work
  lu.assertTrue(empty:push(5, 0))
  lu.assertEquals(empty:pop(0), 5)
end

---- bytes items: strings and encoded tables in the slots' buffers ----

-- n bytes with NULs and every byte value, a different run for each seed.
local function bytes(n, seed)
  local t = {}
  for i = 0, 255 do t[i + 1] = string.char((i * 7 + seed) % 256) end
  local block = table.concat(t)
  return block:rep(math.ceil(n / 256)):sub(1, n)
end

require "ffipar.channel"             -- declares the channel section
local BUF_MAX = require("ffipar.lib").C.FFIPAR_BUF_MAX
local LENGTHS = { 0, 1, 47, 48, 49, 50, 100, 127, 128, 129, 1000, BUF_MAX - 1, BUF_MAX,
  BUF_MAX + 1, 65536, 2^20 }

-- Buffers that no state holds as a spare: the slots' and the popped ones'.
local function bufs_out()
  local C = require("ffipar.lib").C
  return tonumber(C.ffipar_channel_bufs_live()) - require("ffipar.channel")._spares()
end

function TestChannel:testStringsOfEveryLengthRoundTrip()
  -- Up then down then shuffled, through 3 slots: slot buffers are too
  -- small, big enough and traded in every order.
  local order = {}
  for _, n in ipairs(LENGTHS) do order[#order + 1] = n end
  for i = #LENGTHS, 1, -1 do order[#order + 1] = LENGTHS[i] end
  for i = 1, #LENGTHS do order[#order + 1] = LENGTHS[(i * 5) % #LENGTHS + 1] end
  local ch = par.channel(3)
  for i, n in ipairs(order) do
    lu.assertTrue(ch:push(bytes(n, i), 0))
    if i % 2 == 0 then
      lu.assertEquals(ch:pop(0), bytes(order[i - 1], i - 1))
      lu.assertEquals(ch:pop(0), bytes(n, i))
    end
  end
  -- From a worker, the same strings, made there.
  local t = par.spawn(function(ch, order, bytes)
    for i, n in ipairs(order) do assert(ch:push(bytes(n, i))) end
    ch:close()
  end, ch, order, bytes)
  local i = 0
  for s in ch:iter() do
    i = i + 1
    lu.assertEquals(#s, order[i])
    lu.assertTrue(s == bytes(order[i], i), "string " .. i .. " of " .. order[i] .. " bytes differs")
  end
  lu.assertEquals(i, #order)
  lu.assertTrue(t:join(30))
end

function TestChannel:testPlainTablesAroundTheBufferLimitRoundTrip()
  -- Tables whose encoding is just under, at and over the inline size and
  -- the slot buffer's size.
  local buffer = require "string.buffer"
  local VSTR_MAX = require("ffipar.lib").C.FFIPAR_VSTR_MAX
  local vals = {}
  for _, want in ipairs({ VSTR_MAX - 1, VSTR_MAX, VSTR_MAX + 1, BUF_MAX - 1, BUF_MAX, BUF_MAX + 1 }) do
    local n = want - 50
    local t
    repeat
      n = math.max(n, 0)
      t = want < 100 and { z = -0.0, s = bytes(n, want) }
        or { id = want, z = -0.0, big = 2^53, s = bytes(n, want), nested = { 1, { "a\0b" } } }
      n = n + (want - #buffer.encode(t))
    until #buffer.encode(t) == want
    vals[#vals + 1] = t
  end
  vals[#vals + 1] = { 1, 2, 3 }
  vals[#vals + 1] = {}
  local ch = par.channel(2)
  local t = par.spawn(function(ch, vals)
    for _, v in ipairs(vals) do assert(ch:push(v)) end
    for _, v in ipairs(vals) do assert(ch:push(v)) end
    ch:close()
  end, ch, vals)
  local i = 0
  for v in ch:iter() do
    i = i + 1
    local want = vals[(i - 1) % #vals + 1]
    lu.assertEquals(v, want)
    if want.z then lu.assertEquals(1 / v.z, -1 / 0) end
  end
  lu.assertEquals(i, 2 * #vals)
  lu.assertTrue(t:join(30))
end

-- A table whose string.buffer encoding is exactly n bytes (n = 1 or n >= 3:
-- {} is the only 1-byte table, and no table takes 2), different for each n.
local function table_of_encoding(n)
  local buffer = require "string.buffer"
  local t
  if n == 1 then t = {}
  elseif n == 3 then t = { true }
  elseif n < 30 then t = { bytes(n - 3, n) }                      -- 0x0c, 2, then the string
  else t = { -0.0, 2^53 + 2, bytes(n - 30, n), [0] = 0.5 } end   -- doubles in the way
  assert(#buffer.encode(t) == n, "encoding of " .. n)
  return t
end

function TestChannel:testEveryInlineEncodingLengthRoundTrips()
  -- Encodings of up to VSTR_MAX bytes are decoded straight from the item
  -- popped (the slot's copy), one byte over from the slot's buffer: every
  -- length, long ones first so each short one is read over a longer one's
  -- bytes.
  local VSTR_MAX = require("ffipar.lib").C.FFIPAR_VSTR_MAX
  local vals = {}
  for n = VSTR_MAX + 2, 3, -1 do vals[#vals + 1] = table_of_encoding(n) end
  vals[#vals + 1] = table_of_encoding(1)
  local function check(got, want, i)
    lu.assertEquals(got, want, "item " .. i)
    if want[1] == -0.0 and want[2] == 2^53 + 2 then lu.assertEquals(1 / got[1], -1 / 0) end
  end
  -- In one state: the inline ones take no slot buffer, one byte more does.
  local ch = par.channel(64)
  local out = bufs_out()
  for i = 3, #vals do lu.assertTrue(ch:push(vals[i], 0)) end
  lu.assertEquals(bufs_out(), out)
  lu.assertTrue(ch:push(vals[1], 0))
  lu.assertEquals(bufs_out(), out + 1)
  for i = 3, #vals do check(ch:pop(0), vals[i], i) end
  check(ch:pop(0), vals[1], 1)
  -- Through a worker, each after a 42- or 41-byte one, twice.
  local seq = {}
  for _ = 1, 2 do
    for i = 1, #vals do seq[#seq + 1] = vals[i]; seq[#seq + 1] = vals[i % 2 + 1] end
  end
  local t = par.spawn(function(ch, seq)
    for i = 1, #seq do assert(ch:push(seq[i])) end
    ch:close()
  end, ch, seq)
  local i = 0
  for v in ch:iter() do
    i = i + 1
    check(v, seq[i], i)
  end
  lu.assertEquals(i, #seq)
  lu.assertTrue(t:join(30))
end

function TestChannel:testUndecodableItemIsAnErrorAtThePop()
  -- Items made by hand (a push never makes these): empty, cut short and
  -- malformed encodings, inline and in a slot buffer; the pop names the
  -- problem at its caller's line, and the channel goes on.
  local C = require("ffipar.lib").C
  local VSTR_MAX = C.FFIPAR_VSTR_MAX
  local good = require("string.buffer").encode({ 1, 2, 3 })
  local long = require("string.buffer").encode({ bytes(VSTR_MAX + 10, 1) })
  local ch = par.channel(8)
  local c = ffi.cast("ffipar_channel *", ch.c)
  local v = ffi.new("ffipar_value")
  local function push_raw(tag, s)
    v.tag, v.len = tag, #s
    if tag == C.FFIPAR_VSENC then
      ffi.copy(v.u.s, s, #s)
    else
      v.u.b.data = s
      v.u.b.buf = C.ffipar_channel_buf_new(BUF_MAX)
    end
    lu.assertEquals(C.ffipar_channel_push(c, v, 0), 0)
    if tag ~= C.FFIPAR_VSENC then C.ffipar_channel_buf_free(v.u.b.buf) end   -- the pusher's spare
  end
  for _, item in ipairs({ { C.FFIPAR_VSENC, "" }, { C.FFIPAR_VSENC, good:sub(1, #good - 1) },
      { C.FFIPAR_VSENC, "\255\255" }, { C.FFIPAR_VBENC, long:sub(1, #long - 1) },
      { C.FFIPAR_VBENC, ("\255"):rep(VSTR_MAX + 1) } }) do
    push_raw(item[1], item[2])
    push_raw(C.FFIPAR_VSENC, good)
    local line = util.next_line()
    local ok, err = pcall(function() return ch:pop(0) end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "test_channel.lua:" .. line .. ": ffipar.channel: cannot decode a value")
    lu.assertEquals(ch:pop(0), { 1, 2, 3 })
  end
  lu.assertEquals(#ch, 0)
end

function TestChannel:testFlatTablesAreRecognisedFromTheirEncoding()
  local buffer = require "string.buffer"
  local C = require("ffipar.lib").C
  local function flat(v)
    local s = type(v) == "string" and v or buffer.encode(v)
    return C.ffipar_channel_flat(s, #s) ~= 0
  end
  -- Flat: scalars only, strings of every U124 length form (1, 2 and 5 bytes).
  for _, t in ipairs({ {}, { 1, 2, 3 }, { [0] = 1, 2 }, { 1, nil, 3 }, { a = 1, b = "x", c = true, d = false },
      { 1.5, -0.0, 1 / 0, 2^53, x = "y" }, { ("s"):rep(191), ("s"):rep(192), ("s"):rep(8127),
      ("s"):rep(8128), ("s"):rep(70000) }, { [true] = 1, [2.5] = "k" } }) do
    lu.assertTrue(flat(t), "flat: " .. buffer.encode(t):gsub("%c", "."):sub(1, 40))
  end
  -- Not flat: a sub-table anywhere, int64 or complex cdata, not a table at
  -- all; by hand, { a = NULL or a light userdata or a dictionary string }.
  lu.assertTrue(flat("\9\1\33a\2"))        -- { a = true }, the form they share
  for _, v in ipairs({ { {} }, { a = {} }, { [{}] = 1 }, { 1, 2, { 3 } }, { 1LL }, { x = 2ULL },
      { ffi.new("complex", 1, 2) }, 1, "s", true, buffer.encode("s"), "\9\1\33a\3",
      "\9\1\33a\4\0\0\0\1", "\9\1\33a\15\0" }) do
    lu.assertFalse(flat(v), "not flat: " .. tostring(v))
  end
  -- Cut short or padded, the encoding is refused.
  for _, t in ipairs({ { 1, 2, 3 }, { a = ("s"):rep(300), b = 7 }, { ("s"):rep(70000) } }) do
    local s = buffer.encode(t)
    lu.assertTrue(flat(s))
    for n = 0, #s - 1, #s < 400 and 1 or 97 do lu.assertFalse(flat(s:sub(1, n)), "prefix of " .. n) end
    lu.assertFalse(flat(s .. "\0"))
  end
end

function TestChannel:testSelectPopsBytesItems()
  local a, b = par.channel(2), par.channel(2)
  local s1, s2 = bytes(100, 1), bytes(BUF_MAX, 2)
  a:push(s1)
  b:push({ s = s2 })
  local got = {}
  for _ = 1, 2 do
    local i, v = par.select({ a, b }, 1)
    got[i] = v
  end
  lu.assertEquals(got[1], s1)
  lu.assertEquals(got[2], { s = s2 })
end

function TestChannel:testSlotBuffersAreFreedWithTheChannel()
  util.gc()
  local before = bufs_out()
  do
    local ch = par.channel(8)
    for i = 1, 5 do ch:push(bytes(100 * i, i)) end
    ch:push({ 1, 2, 3 })
    ch:push(bytes(BUF_MAX + 1, 9))      -- a message, not a buffer
    lu.assertEquals(ch:pop(0), bytes(100, 1))
    lu.assertEquals(ch:pop(0), bytes(200, 2))
    lu.assertTrue(bufs_out() > before)
  end
  lu.assertEquals(util.settled_live(), self.live)
  lu.assertEquals(bufs_out(), before)
  -- A worker's spares go with its state.
  local ch = par.channel(4)
  local t = par.spawn(function(ch)
    for i = 1, 50 do
      ch:push(("w"):rep(60 + i * 20))
      assert(#ch:pop() == 60 + i * 20)
    end
    return require("ffipar.channel")._spares()
  end, ch)
  lu.assertEquals({ t:join(30) }, { true, 2 })
  t, ch = nil, nil
  lu.assertEquals(util.settled_live(), self.live)
  lu.assertEquals(bufs_out(), before)
end

function TestChannel:testBytesItemsManyProducersAndConsumersExactlyOnce()
  -- Strings and tables of 0 to 6000 bytes (buffers and messages), each
  -- made from its number, checked whole by the consumers.
  local ch, results = par.channel(16), par.channel(8)
  local n = util.scale(3000)
  local function item(k, bytes)
    local len = (k * 37) % 6001
    if k % 3 == 0 then return { k = k, s = bytes(len, k) } end
    return ("%08d"):format(k) .. bytes(len, k)
  end
  local producers, consumers = {}, {}
  for c = 1, 3 do
    consumers[c] = par.spawn(function(ch, results, item, bytes)
      local count, sum, bad = 0, 0, 0
      for v in ch:iter() do
        local k = type(v) == "table" and v.k or tonumber(v:sub(1, 8))
        local want = item(k, bytes)
        if type(v) == "table" then
          if v.s ~= want.s then bad = bad + 1 end
        elseif v ~= want then
          bad = bad + 1
        end
        count, sum = count + 1, sum + k
      end
      results:push({ count, sum, bad })
    end, ch, results, item, bytes)
  end
  for p = 1, 3 do
    producers[p] = par.spawn(function(ch, p, n, item, bytes)
      for k = p, 3 * n, 3 do assert(ch:push(item(k, bytes))) end
    end, ch, p, n, item, bytes)
  end
  for p = 1, 3 do lu.assertTrue(producers[p]:join(60)) end
  ch:close()
  local count, sum, bad = 0, 0, 0
  for c = 1, 3 do
    local r = results:pop(60)
    lu.assertNotNil(r)
    count, sum, bad = count + r[1], sum + r[2], bad + r[3]
    lu.assertTrue(consumers[c]:join(60))
  end
  lu.assertEquals(bad, 0)
  lu.assertEquals(count, 3 * n)
  lu.assertEquals(sum, 3 * n * (3 * n + 1) / 2)
end

---- memory ----

function TestChannel:testFreeingAChannelFreesQueuedMessagesAndHandles()
  do
    local ch = par.channel(8)
    ch:push(par.array("double", 100))
    ch:push({ par.channel(1), par.array("int8_t", 3) })
    ch:push(("long"):rep(50))
    ch:push(1)
    lu.assertEquals(util.live(), self.live + 4)
  end
  lu.assertEquals(util.settled_live(), self.live)
end

function TestChannel:testNoLeaksAfterWorkers()
  local ch = par.channel(4)
  local t = par.spawn(function(ch)
    for i = 1, 10 do ch:push({ i = i }) end
    ch:push(require("ffipar").array("double", 2))
    ch:close()
  end, ch)
  local n = 0
  for _ in ch:iter() do n = n + 1 end
  lu.assertEquals(n, 11)
  lu.assertTrue(t:join(10))
  ch, t = nil, nil
  lu.assertEquals(util.settled_live(), self.live)
end

---- the compiled hot path ----

function TestChannel:testNumberPushPopCompiles()
  local ch = par.channel(64)
  local typed = par.channel(64, "test_rec_t")
  local r = ffi.new("test_rec_t")
  local function loop()
    local s = 0
    for i = 1, 2000 do
      ch:push(i)
      s = s + ch:pop()
      r.id = i
      typed:push(r)
      s = s + typed:pop(nil, r).x
    end
    return s
  end
  local s
  local text = util.jit_log(function() s = loop() end)
  lu.assertEquals(s, 2000 * 2001 / 2)
  lu.assertStrMatches(text, ".*TRACE%s+%d+ test_channel%.lua:%d+ loop.*")
  util.assert_compiles(lu, text)
end

function TestChannel:testBytesPushPopCompiles()
  -- Strings over 40 bytes and plain tables: the slot buffer path, each in
  -- a loop of its own (as a program sends one kind of value).
  local ch = par.channel(64)
  local str, small, mixed = ("s"):rep(100), { 1, 2, 3 }, { 1, "two", 3 }  -- as numbers; encoded inline
  local rec = { id = 1, name = "name", email = "name@example.org", score = 0.5, ok = true }
  local n = 0
  local l1 = util.next_line()
  local function strings() for _ = 1, 2000 do ch:push(str); n = n + #ch:pop() end end
  local function tables() for _ = 1, 2000 do ch:push(small); n = n + ch:pop()[3] end end
  local function encoded() for _ = 1, 2000 do ch:push(mixed); n = n + ch:pop()[3] end end
  local function records() for _ = 1, 2000 do ch:push(rec); n = n + ch:pop().id end end
  -- Each from fresh traces (jit_log flushes): a side trace of pop made for
  -- one kind runs into the next kind's loop before that loop has a trace.
  util.assert_compiles(lu, util.jit_log(strings), "test_channel.lua", l1)
  -- A table's push looks at its keys and values in a loop of its own
  -- (channel.lua's nonscalar): the traces are that loop's and its side traces, which
  -- run on into these loops and back (so no loop trace starts on their
  -- lines); compiled all the same: no abort, no NYI.
  util.assert_compiles(lu, util.jit_log(tables))
  util.assert_compiles(lu, util.jit_log(encoded))
  util.assert_compiles(lu, util.jit_log(records))
  lu.assertEquals(n, 2000 * 107)
end

function TestChannel:testBatchMisuse()
  local ch = par.channel(8, "test_rec_t")
  local src = ffi.new("test_rec_t[?]", 4)
  lu.assertErrorMsgContains("ch:push_many: items [2, 6) are outside the array of 4", ch.push_many, ch, src, 4, 0, 2)
  lu.assertErrorMsgContains("ch:push_many: count must be an integer >= 1", ch.push_many, ch, src, 0)
  lu.assertErrorMsgContains("ch:pop_many: expected an array of test_rec_t", ch.pop_many, ch, ffi.new("int[4]"), 1)
  lu.assertErrorMsgContains("outside the array of 3", ch.pop_many, ch, par.array("test_rec_t", 3), 4)
end

function TestChannel:testBatchesAcrossWorkersExactlyOnce()
  local ch = par.channel(32, "int64_t")
  local n = util.scale(20000)
  local function producer(ch, lo, n)
    local ffi = require "ffi"
    local buf = ffi.new("int64_t[?]", 50)
    local i = lo
    while i < lo + n do
      local k = math.min(50, lo + n - i)
      for j = 0, k - 1 do buf[j] = i + j end
      local sent = 0
      while sent < k do sent = sent + assert(ch:push_many(buf, k - sent, 30, sent)) end
      i = i + k
    end
  end
  local function consumer(ch)
    local ffi = require "ffi"
    local buf = ffi.new("int64_t[?]", 40)
    local count, sum = 0, 0
    while true do
      local k, err = ch:pop_many(buf, 40, 30)
      if not k then assert(err == "closed", err); break end
      for j = 0, k - 1 do sum = sum + tonumber(buf[j]) end
      count = count + k
    end
    return count, sum
  end
  local cs = { par.spawn(consumer, ch), par.spawn(consumer, ch) }
  local ps = { par.spawn(producer, ch, 1, n), par.spawn(producer, ch, n + 1, n) }
  for _, p in ipairs(ps) do lu.assertTrue(p:join(60)) end
  ch:close()
  local count, sum = 0, 0
  for _, c in ipairs(cs) do
    local ok, k, s = c:join(60)
    lu.assertTrue(ok, k)
    count, sum = count + k, sum + s
  end
  lu.assertEquals(count, 2 * n)
  lu.assertEquals(sum, 2 * n * (2 * n + 1) / 2)
end

function TestChannel:testWakeNotLostWhenAWaiterIsCancelled()
  -- Three consumers sleep on an empty channel; one is cancelled, then two
  -- items arrive: the other two get them (a wake swallowed by the cancelled
  -- one would leave an item behind and a consumer asleep until its timeout).
  local ch = par.channel(4)
  local ts = {}
  for i = 1, 3 do ts[i] = par.spawn(function(ch) return ch:pop(20) end, ch) end
  par.sleep(0.2)                                -- all three asleep in pop
  ts[1]:cancel()
  ch:push("a")
  ch:push("b")
  lu.assertEquals({ ts[1]:join(10) }, { true, nil, "cancelled" })
  local got = {}
  for i = 2, 3 do
    local ok, v = ts[i]:join(10)
    lu.assertTrue(ok)
    got[#got + 1] = v
  end
  table.sort(got)
  lu.assertEquals(got, { "a", "b" })          -- joins (10 s) end before the pops' 20 s
end

-- Issue #11: typed batches check what they are given before any byte moves.
function TestChannel:testTypedRefusesNullPointers()
  local ch = par.channel(4, "test_rec_t")
  local null = ffi.cast("test_rec_t *", nil)
  lu.assertErrorMsgContains("ch:push: expected test_rec_t, got a NULL pointer", ch.push, ch, null)
  lu.assertErrorMsgContains("ch:push_many: expected an array of test_rec_t", ch.push_many, ch, null, 1)
  lu.assertErrorMsgContains("got a NULL test_rec_t *", ch.pop_many, ch, null, 1)
  lu.assertEquals(#ch, 0)
end

function TestChannel:testBatchesRefuseArraysOfAnotherType()
  local ints = par.channel(8, "int32_t")
  for i = 1, 4 do ints:push(i) end
  -- a smaller element type: popping 4 int32s into 2 chars wrote past the block
  lu.assertErrorMsgContains("ch:pop_many: expected an array of int32_t (a cdata array, a pointer "
    .. "or a par.array of int32_t), got ffipar.array<char>[2]", ints.pop_many, ints, par.array("char", 2), 2)
  lu.assertErrorMsgContains("got ffipar.array<double>[4]", ints.push_many, ints, par.array("double", 4), 4)
  lu.assertErrorMsgContains("got short [4]", ints.push_many, ints, ffi.new("int16_t[4]"), 4)
  lu.assertErrorMsgContains("got double *", ints.push_many, ints, ffi.new("double[4]") + 0, 4)
  local dbl = par.channel(8, "double")
  lu.assertErrorMsgContains("got ffipar.array<int32_t>[8]", dbl.push_many, dbl, par.array("int32_t", 8), 8)
  lu.assertEquals(#ints, 4)
  lu.assertEquals(#dbl, 0)
  -- the right type still goes through, and a par.array's length is checked
  local a = par.array("int32_t", 4)
  lu.assertEquals(ints:pop_many(a, 4, 0), 4)
  lu.assertEquals({ a[0], a[3] }, { 1, 4 })
  lu.assertErrorMsgContains("ch:push_many: items [1, 5) are outside the array of 4", ints.push_many, ints, a, 4, 0, 1)
end

function TestChannel:testBatchesTakeFixedSizeArrays()
  local ch = par.channel(16, "double")
  local src, dst = ffi.new("double[8]"), ffi.new("double[8]")
  for i = 0, 7 do src[i] = i + 0.5 end
  lu.assertEquals(ch:push_many(src, 8, 0), 8)
  lu.assertEquals(ch:pop_many(dst, 6, 0, 2), 6)
  lu.assertEquals({ dst[0], dst[2], dst[7] }, { 0, 0.5, 5.5 })
  lu.assertErrorMsgContains("ch:push_many: items [0, 9) are outside the array of 8", ch.push_many, ch, src, 9)
  lu.assertErrorMsgContains("ch:pop_many: items [7, 9) are outside the array of 8", ch.pop_many, ch, dst, 2, 0, 7)
  lu.assertErrorMsgContains("ch:pop_many: lo must be an integer >= 0 or nil, got -1", ch.pop_many, ch, dst, 2, 0, -1)
end

function TestChannel:testBoolChannel()
  local ch = par.channel(4, "bool")
  lu.assertTrue(ch:push(true))
  lu.assertTrue(ch:push(false))
  lu.assertEquals(ch:pop(0), true)
  lu.assertEquals(ch:pop(0), false)
  lu.assertErrorMsgContains("ch:push: expected bool, got number", ch.push, ch, 1)
end

function TestChannel:testWrongStructIsNamed()
  par.cdef "typedef struct { int a; } test_other_t;"
  local ch = par.channel(4, "test_rec_t")
  local ok, err = pcall(ch.push, ch, ffi.new("test_other_t"))
  lu.assertFalse(ok)
  lu.assertStrContains(err, "ch:push: expected test_rec_t (a test_rec_t cdata, a pointer to one or "
    .. "a table that initializes one), got test_other_t")
  lu.assertNil(err:find("struct %d"), err)
  ok, err = pcall(ch.push, ch, { id = "x" })
  lu.assertFalse(ok)
  lu.assertStrContains(err, "ch:push: expected test_rec_t, got table that does not initialize one")
  lu.assertNil(err:find("struct %d"), err)
end

function TestChannel:testNamedCtypeOfACdefTypedef()
  local ch = par.channel(4, ffi.typeof("test_rec_t"))
  lu.assertTrue(ch:push({ id = 7 }))
  local t = par.spawn(function(ch) return tonumber(ch:pop(5).id) end, ch)
  lu.assertEquals({ t:join(10) }, { true, 7 })
  lu.assertStrContains(tostring(ch), "test_rec_t")
end

function TestChannel:testItemSizeAndAlignmentLimits()
  par.cdef "typedef struct { char b[2000000]; } test_huge_t;"
  par.cdef "typedef struct { __attribute__((aligned(128))) int x; } test_al128_t;"
  lu.assertEquals(ffi.alignof("test_al128_t"), 128)
  lu.assertErrorMsgContains("ffipar.channel: 'test_huge_t' items are 2000000 bytes; a channel's items "
    .. "are limited to 1 MiB", par.channel, 2, "test_huge_t")
  lu.assertErrorMsgContains("ffipar.channel: 'test_al128_t' is aligned to 128 bytes; a channel's "
    .. "items may be aligned to at most 64", par.channel, 2, "test_al128_t")
end

function TestChannel:testNestedWrongStructIsNamed()
  par.cdef "typedef struct { int a; } test_inner_t; typedef struct { test_inner_t o; } test_outer_t;"
  local ch = par.channel(2, "test_outer_t")
  lu.assertErrorMsgContains("ch:push: expected test_outer_t, got table that does not initialize one "
    .. "(cannot convert 'test_rec_t' to 'test_inner_t')", ch.push, ch, { o = ffi.new("test_rec_t") })
end
