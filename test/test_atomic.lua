-- par.atomic and par.atomics: results, contention, misuse, crossing, JIT.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

TestAtomic = {}

function TestAtomic:tearDown()
  util.gc()
end

function TestAtomic:testOperationsReturnOldValues()
  local n = par.atomic(5)
  lu.assertEquals(n:load(), 5)
  lu.assertEquals(n:add(3), 5)
  lu.assertEquals(n:sub(1), 8)
  lu.assertEquals(n:exchange(100), 7)
  lu.assertTrue(n:cas(100, 9))
  lu.assertFalse(n:cas(100, 10))
  lu.assertEquals(n:load(), 9)
  n:store(-4)
  lu.assertEquals(n:load(), -4)
  lu.assertEquals(type(n:load()), "number")
  lu.assertEquals(par.atomic():load(), 0)
  lu.assertStrContains(tostring(n), "ffipar.atomic(-4)")
end

function TestAtomic:testInt64CdataAndPrecision()
  local big = 2LL ^ 62 + 1
  local n = par.atomic(big)
  lu.assertEquals(n:load64(), big)
  lu.assertEquals(n:load(), 2^62)              -- a double: rounded
  lu.assertEquals(n:add(1LL), 2^62)
  lu.assertEquals(n:load64(), big + 1)
  lu.assertTrue(n:cas(big + 1, 0LL))
  lu.assertEquals(n:load(), 0)
end

function TestAtomic:testContendedAddIsExact()
  local n = par.atomic(0)
  local iters = util.scale(1e6)
  local go = par.barrier(2)
  local ts = {}
  for i = 1, 2 do
    ts[i] = par.spawn(function(n, iters, go)
      assert(go:wait(30) ~= nil)          -- start together
      for _ = 1, iters do n:add(1) end
      for _ = 1, iters do n:sub(1) end
      for _ = 1, iters do n:add(2) end
    end, n, iters, go)
  end
  for i = 1, 2 do lu.assertTrue(ts[i]:join(120)) end
  lu.assertEquals(n:load(), 2 * 2 * iters)
end

function TestAtomic:testContendedCasLoopIsExact()
  local n = par.atomic(0)
  local iters = util.scale(2e5)
  local ts = {}
  for i = 1, 2 do
    ts[i] = par.spawn(function(n, iters)
      local retries = 0
      for _ = 1, iters do
        local v = n:load()
        while not n:cas(v, v + 1) do v = n:load(); retries = retries + 1 end
      end
      return retries
    end, n, iters)
  end
  for i = 1, 2 do lu.assertTrue(ts[i]:join(120)) end
  lu.assertEquals(n:load(), 2 * iters)
end

function TestAtomic:testExchangeHandsOutEachTokenOnce()
  -- Each worker swaps its own tokens in; every token comes out exactly once.
  local n = par.atomic(0)
  local iters = util.scale(1e5)
  local seen = par.array("int32_t", 2 * iters + 1)
  local ts = {}
  for w = 1, 2 do
    ts[w] = par.spawn(function(n, seen, w, iters)
      for i = 1, iters do
        local old = n:exchange(2 * (i - 1) + w)
        par.atomics.add(seen:ptr() + old, 1)
      end
    end, n, seen, w, iters)
  end
  for w = 1, 2 do lu.assertTrue(ts[w]:join(120)) end
  seen[n:load()] = seen[n:load()] + 1           -- the last token still inside
  lu.assertEquals(seen[0], 1)                   -- the initial 0 came out once
  for t = 1, 2 * iters do
    if seen[t] ~= 1 then lu.fail(("token %d came out %d times"):format(t, seen[t])) end
  end
end

function TestAtomic:testAtomicsOnEachCellType()
  local i32 = par.array("int32_t", 2)
  local i64 = par.array("int64_t", 2)
  local f64 = par.array("double", 2)
  local A = par.atomics
  for _, p in ipairs({ i32:ptr() + 1, i64:ptr() + 1, f64:ptr() + 1 }) do
    lu.assertEquals(A.load(p), 0)
    lu.assertEquals(A.add(p, 5), 0)
    lu.assertEquals(A.exchange(p, 7), 5)
    lu.assertTrue(A.cas(p, 7, 9))
    lu.assertFalse(A.cas(p, 7, 10))
    A.store(p, 3)
    lu.assertEquals(A.load(p), 3)
    lu.assertEquals(type(A.load(p)), "number")
  end
  lu.assertEquals(A.add(f64:ptr(), 0.25), 0)
  lu.assertEquals(f64[0], 0.25)
  lu.assertEquals(A.add(i32:ptr(), 2^31 - 1), 0)
  lu.assertEquals(A.add(i32:ptr(), 1), 2^31 - 1)   -- wraps, as the hardware does
  lu.assertEquals(i32[0], -2^31)
  lu.assertEquals(A.add(i64:ptr(), 2LL ^ 60), 0)
  lu.assertEquals(i64[0], 2LL ^ 60)
  local n = par.new("int64_t", 4)
  lu.assertEquals(A.add(n, 1), 4)
  lu.assertEquals(tonumber(n[0]), 5)
end

function TestAtomic:testContendedAtomicsAreExact()
  local i32 = par.array("int32_t", 1)
  local i64 = par.array("int64_t", 1)
  local f64 = par.array("double", 1)
  local iters = util.scale(3e5)
  local ts = {}
  for w = 1, 2 do
    ts[w] = par.spawn(function(i32, i64, f64, iters)
      local A = par.atomics
      local p32, p64, pf = i32:ptr(), i64:ptr(), f64:ptr()
      for _ = 1, iters do
        A.add(p32, 1); A.add(p64, 3); A.add(pf, 0.5)
      end
    end, i32, i64, f64, iters)
  end
  for w = 1, 2 do lu.assertTrue(ts[w]:join(120)) end
  lu.assertEquals(i32[0], 2 * iters)
  lu.assertEquals(tonumber(i64[0]), 6 * iters)
  lu.assertEquals(f64[0], iters)
end

function TestAtomic:testMisuseNamesTheArgument()
  local n = par.atomic(1)
  lu.assertErrorMsgContains("n:add: argument #1 must be an integer, got x", n.add, n, "x")
  lu.assertErrorMsgContains("n:add: argument #1 must be an integer, got 1.5", n.add, n, 1.5)
  lu.assertErrorMsgContains("n:store: argument #1 must be an integer, got nil", n.store, n)
  lu.assertErrorMsgContains("n:sub: argument #1 must be an integer, got inf", n.sub, n, math.huge)
  lu.assertErrorMsgContains("n:cas: argument #2 must be an integer, got nil", n.cas, n, 1)
  lu.assertErrorMsgContains("n:add: expected a par.atomic as self", n.add, 1)
  lu.assertErrorMsgContains("n:load: expected a par.atomic as self (use n:method()), got nil", n.load)
  lu.assertErrorMsgContains("ffipar.atomic: initial value must be an integer, got 0.5", par.atomic, 0.5)
  lu.assertErrorMsgContains("ffipar.atomic: initial value must be an integer, got x", par.atomic, "x")
  lu.assertEquals(n:load(), 1)
  local ok, err = pcall(function() n:add({}) end)
  lu.assertFalse(ok)
  lu.assertStrContains(err, "test_atomic.lua")     -- raised at the caller's line
end

function TestAtomic:testAtomicsRefuseOtherPointers()
  local A = par.atomics
  local a = par.array("double", 2)
  local msg = "ffipar.atomics.add: argument #1 must be an int32_t*, int64_t* or double*"
  lu.assertErrorMsgContains(msg, A.add, ffi.new("float[1]"), 1)
  lu.assertErrorMsgContains(msg, A.add, ffi.cast("uint32_t *", a:ptr()), 1)
  lu.assertErrorMsgContains(msg .. " into shared memory (e.g. a:ptr() + i), got number", A.add, 5, 1)
  lu.assertErrorMsgContains("got a NULL ctype<double *>", A.add, ffi.cast("double *", nil), 1)
  lu.assertErrorMsgContains("got nil", A.load, nil)
  lu.assertErrorMsgContains("ffipar.atomics.load: argument #1", A.load, a)
  lu.assertErrorMsgContains("ffipar.atomics.cas: argument #1", A.cas, "x", 1, 2)
  lu.assertErrorMsgContains("ffipar.atomics.store: argument #2 must be a number, got x",
    A.store, a:ptr(), "x")
  local i = par.array("int32_t", 1)
  lu.assertErrorMsgContains("ffipar.atomics.add: argument #2 must be an integer in int32_t range, got 2147483648",
    A.add, i:ptr(), 2^31)
  lu.assertErrorMsgContains("ffipar.atomics.cas: argument #3 must be an integer in int32_t range, got 0.5",
    A.cas, i:ptr(), 0, 0.5)
  local j = par.array("int64_t", 1)
  lu.assertErrorMsgContains("ffipar.atomics.exchange: argument #2 must be an integer, got 1.5",
    A.exchange, j:ptr(), 1.5)
  lu.assertEquals(i[0], 0)
end

function TestAtomic:testHandleCrossesAndComesBack()
  local before = util.settled_live()
  local n = par.atomic(10)
  local ok, back, seen = par.spawn(function(n) n:add(5); return n, n:load() end, n):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(seen, 15)
  lu.assertEquals(util.addr(back), util.addr(n))
  back:add(1)
  lu.assertEquals(n:load(), 16)
  -- an atomic made in a worker outlives it
  local ok2, made = par.spawn(function() local m = par.atomic(7); m:add(1); return m end):join(10)
  lu.assertTrue(ok2)
  util.gc()
  lu.assertEquals(made:load(), 8)
  n, back, made = nil, nil, nil
  lu.assertEquals(util.settled_live(), before)
end

function TestAtomic:testHotLoopsCompile()
  local n = par.atomic(0)
  local a = par.array("double", 1)
  local line
  local log = util.jit_log(function()
    local s = 0
    line = util.next_line()
    for _ = 1, 1000 do s = s + n:add(1) end
    for _ = 1, 1000 do s = s + n:load() end
    local p = a:ptr()
    for _ = 1, 1000 do par.atomics.add(p, 1) end
  end)
  lu.assertNil(util.jit_problem(log, "test_atomic.lua", line))
  lu.assertNil(util.jit_problem(log, "test_atomic.lua", line + 1))
  lu.assertNil(util.jit_problem(log, "test_atomic.lua", line + 3))
  lu.assertEquals(n:load(), 1000)
  lu.assertEquals(a[0], 1000)
end

-- Issue #11: a uint64_t above INT64_MAX is refused (it would become a
-- negative value); int64 and smaller uint64 values are exact.
function TestAtomic:testOutOfRangeUint64IsAnError()
  lu.assertErrorMsgContains("ffipar.atomic: initial value must be an integer in int64_t range, got "
    .. "18446744073709551615ULL", par.atomic, 0xFFFFFFFFFFFFFFFFULL)
  lu.assertErrorMsgContains("ffipar.atomic: initial value must be an integer in int64_t range",
    par.atomic, 0x8000000000000000ULL)
  lu.assertEquals(par.atomic(0x7FFFFFFFFFFFFFFFULL):load64(), 0x7FFFFFFFFFFFFFFFLL)
  lu.assertEquals(par.atomic(-1LL):load64(), -1LL)
  local n = par.atomic(0)
  lu.assertErrorMsgContains("n:add: argument #1 must be an integer in int64_t range", n.add, n,
    0xFFFFFFFFFFFFFFFFULL)
  lu.assertErrorMsgContains("ffipar.atomics.store: argument #2 must be an integer in int64_t range",
    par.atomics.store, par.array("int64_t", 1):ptr(), 0xFFFFFFFFFFFFFFFFULL)
  lu.assertErrorMsgContains("ffipar.atomic: initial value must be an integer in int64_t range, got NULL void *",
    par.atomic, ffi.cast("void *", nil))
  lu.assertEquals(n:load(), 0)
end
