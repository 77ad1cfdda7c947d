-- What crosses into a worker and back: values, upvalues, modules, refusals.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

TestCodec = {}

local function roundtrip(fn, ...)
  local r = { par.spawn(fn, ...):join(10) }
  return r
end

function TestCodec:testPlainValuesCopy()
  local t = { 1, 2.5, "s", true, nested = { deep = { "x" } }, [10] = false }
  local r = roundtrip(function(v) return v end, t)
  lu.assertEquals(r, { true, t })
end

function TestCodec:testInt64CdataCrosses()
  local r = roundtrip(function(a, b) return a + 1, b end, ffi.new("int64_t", 2^40), ffi.new("uint64_t", 7))
  lu.assertTrue(r[1])
  lu.assertEquals(tostring(r[2]), tostring(ffi.new("int64_t", 2^40 + 1)))
  lu.assertEquals(tostring(r[3]), "7ULL")
end

function TestCodec:testTrailingNilsKeepCount()
  local r = { par.spawn(function(...) return select("#", ...) end, 1, nil, nil):join(10) }
  lu.assertEquals(r, { true, 3 })
end

function TestCodec:testModuleUpvaluesAreRequiredAgain()
  local sqrt, fmt = math.sqrt, string.format
  local r = roundtrip(function(x) return ffi.sizeof("int64_t"), sqrt(x), fmt("%d", x) end, 16)
  lu.assertEquals(r, { true, 8, 4, "16" })
end

function TestCodec:testLuaFunctionUpvaluesAndRecursion()
  local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
  local k = 10
  local function twice(x) return 2 * x + k end
  local r = roundtrip(function(n) return fib(n), twice(n) end, 20)
  lu.assertEquals(r, { true, 6765, 50 })
end

function TestCodec:testFunctionsAsArgumentsAndInTables()
  local r = roundtrip(function(f, t) return f(3), t.g(4) end,
    function(x) return x * x end, { g = function(x) return x + 1 end })
  lu.assertEquals(r, { true, 9, 5 })
end

function TestCodec:testFfiCAndNamedCtypesCross()
  local C, int_t = ffi.C, ffi.typeof("int32_t")
  local r = roundtrip(function() return type(C), ffi.sizeof(int_t) end)
  lu.assertEquals(r, { true, "userdata", 4 })
end

function TestCodec:testHandlesCrossInsideTables()
  local a = par.array("int32_t", 4)
  local r = roundtrip(function(t) t.arr[1] = 5; return #t.arr end, { arr = a })
  lu.assertEquals(r, { true, 4 })
  lu.assertEquals(a[1], 5)
end

function TestCodec:testRefusesCoroutineArgument()
  lu.assertErrorMsgContains("ffipar.spawn: argument #3 is a coroutine, which cannot cross",
    par.spawn, function() end, 1, coroutine.create(print))
end

function TestCodec:testRefusesOrdinaryCdata()
  lu.assertErrorMsgContains("argument #2 is ordinary cdata",
    par.spawn, function() end, ffi.new("double[4]"))
end

function TestCodec:testRefusesUserdata()
  lu.assertErrorMsgContains("argument #2 is a userdata", par.spawn, function() end, io.stdout)
end

function TestCodec:testRefusesForeignCFunction()
  local it = string.gmatch("a", "a")
  lu.assertErrorMsgContains("argument #2 is a C function that belongs to no loaded module",
    par.spawn, function() end, it)
end

function TestCodec:testRefusalNamesUpvalue()
  local co = coroutine.create(print)
  lu.assertErrorMsgContains("upvalue 'co' of argument #1 is a coroutine",
    par.spawn, function() return co end)
end

function TestCodec:testRefusalNamesTableKey()
  lu.assertErrorMsgContains('argument #2["inner"]["co"] is a coroutine',
    par.spawn, function() end, { inner = { co = coroutine.create(print) } })
end

function TestCodec:testRefusesCyclicTable()
  local t = {}
  t.self = t
  lu.assertErrorMsgContains("contains itself", par.spawn, function() end, t)
end

-- A refusal deep inside a table leaves nothing behind: the same table,
-- fixed, crosses on the next try (the encoder reuses its scratch).
function TestCodec:testRefusalLeavesEncoderClean()
  local inner = { co = coroutine.create(print) }
  local t = { inner = inner, f = function() return 1 end }
  lu.assertErrorMsgContains("is a coroutine", par.spawn, function() end, t)
  inner.co = "fine"
  local r = roundtrip(function(t) return t.inner.co, t.f() end, t)
  lu.assertEquals(r, { true, "fine", 1 })
end

function TestCodec:testRefusesAnonymousCtype()
  local anon = ffi.typeof("struct { int x; }")
  lu.assertErrorMsgContains("anonymous ctype", par.spawn, function() return anon end)
end

function TestCodec:testResultThatCannotCrossFailsJoin()
  local ok, err = par.spawn(function() return coroutine.create(print) end):join(10)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "result #1 is a coroutine")
end

function TestCodec:testSharedTableIsCopiedNotShared()
  local t = { n = 1 }
  local r = roundtrip(function(x) x.n = 2; return x.n end, t)
  lu.assertEquals(r, { true, 2 })
  lu.assertEquals(t.n, 1)
end

function TestCodec:testCallerTableIsNotModified()
  local a = par.array("double", 1)
  local t = { a = a, 1 }
  par.spawn(function() end, t):join(10)
  lu.assertIs(t.a, a)
end

---- encodings: every value class, shared sub-tables, depth ----

-- The values every encoding must give back exactly: the fast path (a
-- plain table as string.buffer encodes it), the converting path (the same
-- table beside a function) and a channel.
local function value_classes()
  return {
    nan = 0 / 0, negzero = -0.0, inf = 1 / 0, ninf = -1 / 0, big = 2^53, tiny = 2^-1074,
    int = 42, neg = -7, t = true, f = false, empty = "", nul = "a\0b\0", s48 = ("x"):rep(48),
    s49 = ("y"):rep(49), bin = string.char(0, 255, 10, 13, 0), nested = { { { "deep" } } },
    [1] = "one", [2.5] = "float key", [true] = "bool key", list = { 1, 2, nil, 4 },
  }
end

local function assert_classes(v)
  lu.assertTrue(v.nan ~= v.nan)
  lu.assertEquals(1 / v.negzero, -1 / 0)           -- -0.0 stays negative
  lu.assertEquals(v.inf, 1 / 0)
  lu.assertEquals(v.ninf, -1 / 0)
  lu.assertEquals(v.big, 2^53)
  lu.assertEquals(v.tiny, 2^-1074)
  lu.assertEquals({ v.int, v.neg, v.t, v.f, v.empty }, { 42, -7, true, false, "" })
  lu.assertEquals(v.nul, "a\0b\0")
  lu.assertEquals(v.s48, ("x"):rep(48))
  lu.assertEquals(v.s49, ("y"):rep(49))
  lu.assertEquals(v.bin, string.char(0, 255, 10, 13, 0))
  lu.assertEquals(v.nested[1][1][1], "deep")
  lu.assertEquals({ v[1], v[2.5], v[true] }, { "one", "float key", "bool key" })
  lu.assertEquals({ v.list[1], v.list[2], v.list[3], v.list[4] }, { 1, 2, nil, 4 })
end

function TestCodec:testEveryValueClassRoundTripsExactly()
  local fast = value_classes()
  local slow = value_classes()
  slow.fn = function() return 1 end                -- forces the converting path
  local ok, a, b, i64, u64 = par.spawn(function(a, b, i, u) return a, b, i, u end,
    fast, slow, ffi.new("int64_t", -2^62), ffi.new("uint64_t", 2^63)):join(10)
  lu.assertTrue(ok)
  assert_classes(a)
  assert_classes(b)
  lu.assertEquals(b.fn(), 1)
  lu.assertTrue(i64 == ffi.new("int64_t", -2^62))
  lu.assertTrue(u64 == ffi.new("uint64_t", 2^63))
  local ch = par.channel(4)
  ch:push(value_classes())
  ch:push(slow)
  assert_classes(ch:pop(0))
  assert_classes(ch:pop(0))
end

function TestCodec:testHundredMegabyteString()
  local n = util.scale and util.scale(100 * 2^20) or 100 * 2^20
  local s = ("0123456789abcdef"):rep(n / 16)
  local ok, len, tail = par.spawn(function(x) return #x, x:sub(-16) end, s):join(30)
  lu.assertEquals({ ok, len, tail }, { true, #s, "0123456789abcdef" })
  local ch = par.channel(1)
  local t = par.spawn(function(ch, x) ch:push(x .. "!") end, ch, s)
  local got = ch:pop(30)
  lu.assertTrue(t:join(30))
  lu.assertEquals(#got, #s + 1)
  lu.assertTrue(got == s .. "!")
end

-- Each level refers to the level below twice: 2^31 paths, 32 tables. It
-- crosses as 32 tables (a bounded join: by path it would take minutes),
-- and the two references stay one table.
local function dag(levels)
  local t = { leaf = true }
  for _ = 1, levels do t = { a = t, b = t } end
  return t
end

local function dag_ok(t)
  local d = 0
  while t.a do
    if t.a ~= t.b then return false, d end
    t, d = t.a, d + 1
  end
  return t.leaf, d
end

function TestCodec:testSharedSubTablesCrossOnceAndStayShared()
  local ok, same, depth = par.spawn(function(t) return dag_ok(t) end, dag(31)):join(10)
  lu.assertEquals({ ok, same, depth }, { true, true, 31 })
  -- a result, and beside a function (the converting path for everything)
  local ok2, r = par.spawn(function() return { d = dag(31), f = print } end):join(10)
  lu.assertTrue(ok2)
  lu.assertEquals({ dag_ok(r.d) }, { true, 31 })
  lu.assertIs(r.f, print)
  -- through a channel: walked before string.buffer sees it (encoding it by
  -- path took 11 s and left a 2 GB buffer behind before it was refused)
  local ch = par.channel(1)
  local rss = util.rss_kib()
  ch:push(dag(31))
  lu.assertTrue(util.rss_kib() - rss < 100 * 1024, "the push grew the process by over 100 MB")
  lu.assertEquals({ dag_ok(ch:pop(0)) }, { true, 31 })
  ch:push({ dag(31), dag(31) })                       -- below the top, in the array part
  lu.assertTrue(util.rss_kib() - rss < 100 * 1024, "the push grew the process by over 100 MB")
  local two = ch:pop(0)
  lu.assertEquals({ dag_ok(two[1]) }, { true, 31 })
  -- at t[0], which LuaJIT keeps in the array part (a traversal from #t
  -- skips it): 0.2 s for 22 levels before, by path
  local zero = { 1, 2, 3 }
  zero[0] = dag(31)
  ch:push(zero)
  lu.assertTrue(util.rss_kib() - rss < 100 * 1024, "the push grew the process by over 100 MB")
  local z = ch:pop(0)
  lu.assertEquals({ z[1], z[3], dag_ok(z[0]) }, { 1, 3, true, 31 })
end

function TestCodec:testSharedSubTablesInsideOneValueOnly()
  local shared = { n = 1 }
  local ok, same, n = par.spawn(function(t) return t[1] == t.x and t[1] == t.y.z, t.x.n end,
    { shared, x = shared, y = { z = shared } }):join(10)
  lu.assertEquals({ ok, same, n }, { true, true, 1 })
  -- a table that is an upvalue of a function and a key of a table in one value
  local key = { "k" }
  local function f() return key end
  local ok2, same2, r = par.spawn(function(v) return v.g() == next(v.t), v.t[v.g()] end,
    { g = f, t = { [key] = 5 } }):join(10)
  lu.assertEquals({ ok2, same2, r }, { true, true, 5 })
  -- two arguments are two values: each its own copy
  local ok3, same3 = par.spawn(function(a, b) return a == b end, shared, shared):join(10)
  lu.assertEquals({ ok3, same3 }, { true, false })
end

local function nested(levels)
  local root = {}
  local t = root
  for _ = 2, levels do t[1] = {}; t = t[1] end
  return root
end

function TestCodec:testTooDeepIsAnErrorAtTheCallersLine()
  local ok, r = par.spawn(function(t) local d = 0; while t do d = d + 1; t = t[1] end; return d end,
    nested(90)):join(10)
  lu.assertEquals({ ok, r }, { true, 90 })
  local line = debug.getinfo(1, "l").currentline + 1
  local ok2, err = pcall(function() par.spawn(function() end, 1, nested(98)) end)
  lu.assertFalse(ok2)
  lu.assertStrContains(err, ("test_codec.lua:%d: ffipar.spawn: argument #3 has tables nested "
    .. "more than 90 levels deep"):format(line))
  local ch = par.channel(1)
  line = debug.getinfo(1, "l").currentline + 1
  local ok3, err3 = pcall(function() ch:push({ x = nested(200) }) end)
  lu.assertFalse(ok3)
  lu.assertStrContains(err3, ("test_codec.lua:%d: ch:push: value #1 has tables nested"):format(line))
  local ok4, err4 = par.spawn(function() return nested(100) end):join(10)
  lu.assertFalse(ok4)
  lu.assertStrContains(err4, "result #1 has tables nested more than 90 levels deep")
end

---- big tables: the plain walk marks sub-tables instead of a hash set ----

local function big(n)
  local t = {}
  for i = 1, n do t["r" .. i] = { id = i, hist = { i, i + 1 }, tags = { "a" } } end
  return t
end

-- Every sub-table's metatable is what it was (the walk's marks are gone).
local function no_marks(t, want, seen)
  seen = seen or { [t] = true }
  for _, v in pairs(t) do
    if type(v) == "table" and not seen[v] then
      seen[v] = true
      if getmetatable(v) ~= (want and want[v]) then return false end
      if not no_marks(v, want, seen) then return false end
    end
  end
  return true
end

function TestCodec:testBigTablesCrossExactlyAndKeepTheirMetatables()
  local t = big(2000)                           -- 6000 sub-tables: the marking walk
  local ok, n, r7 = par.spawn(function(x)
    local n = 0
    for _ in pairs(x) do n = n + 1 end
    return n, x.r7
  end, t):join(10)
  lu.assertEquals({ ok, n, r7 }, { true, 2000, t.r7 })
  lu.assertTrue(no_marks(t))
  -- a shared sub-table, met after thousands of others: one table in the worker
  t.r1999.link = t.r3.hist
  local ok2, same = par.spawn(function(x) return x.r1999.link == x.r3.hist end, t):join(10)
  lu.assertEquals({ ok2, same }, { true, true })
  lu.assertTrue(no_marks(t))
  local ch = par.channel(1)
  ch:push(t)
  local got = ch:pop(0)
  lu.assertIs(got.r1999.link, got.r3.hist)
  lu.assertTrue(no_marks(t))
  t.r1999.link = nil
  -- sub-tables with metatables of their own (one protected), one of them shared
  local mt, guarded = { __index = {} }, { __metatable = "locked" }
  local want = {}
  for i = 1, 2000, 3 do
    setmetatable(t["r" .. i].tags, i % 2 == 0 and mt or guarded)
    want[t["r" .. i].tags] = getmetatable(t["r" .. i].tags)
  end
  t.r5.also = t.r4.tags
  local ok3, same3, id = par.spawn(function(x) return x.r5.also == x.r4.tags, x.r4.id end, t):join(10)
  lu.assertEquals({ ok3, same3, id }, { true, true, 4 })
  lu.assertTrue(no_marks(t, want))
  t.r5.also = nil
end

function TestCodec:testBigTablesRefusalsAreAtTheCallersLineAndLeaveNoMarks()
  local t = big(1000)
  t.r900.hist.back = t.r900                     -- a cycle deep in a big table
  local line = debug.getinfo(1, "l").currentline + 1
  local ok, err = pcall(function() par.spawn(function() end, t) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('test_codec.lua:%d: ffipar.spawn: argument #2["r900"]["hist"]["back"] '
    .. 'is a table that contains itself'):format(line))
  lu.assertTrue(no_marks(t))
  t.r900.hist.back = coroutine.create(print)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() par.channel(1):push(t) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ('test_codec.lua:%d: ch:push: value #1["r900"]["hist"]["back"] is a coroutine')
    :format(line))
  lu.assertTrue(no_marks(t))
  t.r900.hist.back = nested(95)
  line = debug.getinfo(1, "l").currentline + 1
  ok, err = pcall(function() par.spawn(function() end, t) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, ("test_codec.lua:%d: ffipar.spawn: argument #2 has tables nested "
    .. "more than 90 levels deep"):format(line))
  lu.assertTrue(no_marks(t))
  t.r900.hist.back = nil
  lu.assertTrue(par.spawn(function(x) return x.r900.hist[1] == 900 end, t):join(10))
end
