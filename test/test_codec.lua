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
