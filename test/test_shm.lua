-- Shared memory: par.array, par.new, par.cdef, the race check.
local lu = require "luaunit"
local ffi = require "ffi"
local par = require "ffipar"
local util = require "util"

TestShm = {}

function TestShm:tearDown()
  util.gc()
end

function TestShm:testArrayIsZeroedAlignedAndIndexed()
  local a = par.array("double", 100)
  lu.assertEquals(#a, 100)
  lu.assertEquals(a[0], 0)
  lu.assertEquals(a[99], 0)
  a[5] = 2.5
  lu.assertEquals(a[5], 2.5)
  lu.assertEquals(a:ptr()[5], 2.5)
  lu.assertEquals(util.addr(a:ptr()) % 64, 0)
  lu.assertStrContains(tostring(a), "ffipar.array<double>[100]")
end

function TestShm:testEmptyArray()
  lu.assertEquals(#par.array("int8_t", 0), 0)
end

function TestShm:testSameAddressInWorker()
  local a = par.array("int64_t", 10)
  local ok, addr = par.spawn(function(a)
    for i = 0, #a - 1 do a[i] = i * i end
    return tonumber(ffi.cast("intptr_t", a:ptr()))
  end, a):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(addr, util.addr(a:ptr()))
  lu.assertEquals(tonumber(a[9]), 81)
end

function TestShm:testArrayReturnedFromWorkerOutlivesIt()
  local ok, a = par.spawn(function()
    local a = require("ffipar").array("int32_t", 3)
    a[2] = 42
    return a
  end):join(10)
  lu.assertTrue(ok)
  util.gc()
  lu.assertEquals(#a, 3)
  lu.assertEquals(a[2], 42)
end

function TestShm:testMemoryFreedAfterLastHandle()
  local before = util.settled_live()
  local a = par.array("double", 1000)
  lu.assertEquals(util.live(), before + 1)
  local t = par.spawn(function(a) return a end, a)
  lu.assertTrue(t:join(10))
  a = nil
  lu.assertEquals(util.live_settles(before + 2), before + 2) -- the thread keeps its results
  t = nil
  lu.assertEquals(util.live_settles(before), before)
end

function TestShm:testArrayOfStructs()
  par.cdef("typedef struct { int32_t id; double score; } test_item_t;")
  local a = par.array("test_item_t", 4)
  a[1].score = 3.5
  local ok, s = par.spawn(function(a) a[2].id = 7; return a[1].score end, a):join(10)
  lu.assertEquals({ ok, s }, { true, 3.5 })
  lu.assertEquals(a[2].id, 7)
end

function TestShm:testCtypeObjectAccepted()
  local a = par.array(ffi.typeof("uint16_t"), 3)
  a[0] = 65535
  lu.assertEquals(a[0], 65535)
end

function TestShm:testNewStructIsShared()
  par.cdef("typedef struct { int64_t hits; double sum; } test_stats_t;")
  local st = par.new("test_stats_t", { 1, 0.5 })
  lu.assertEquals(tonumber(st.hits), 1)
  local ok = par.spawn(function(st) st.hits = st.hits + 10; st.sum = st.sum * 4 end, st):join(10)
  lu.assertTrue(ok)
  lu.assertEquals(tonumber(st.hits), 11)
  lu.assertEquals(st.sum, 2)
end

function TestShm:testNewScalar()
  local n = par.new("int32_t", 5)
  lu.assertEquals(n[0], 5)
end

function TestShm:testCdefMadeAfterWorkerStartReachesIt()
  -- Declarations are replayed before each message is decoded.
  par.cdef("typedef struct { int16_t a, b; } test_late_t;")
  local p = par.new("test_late_t", { 3, 4 })
  lu.assertEquals({ par.spawn(function(p) return p.a + p.b end, p):join(10) }, { true, 7 })
end

function TestShm:testCdefTwiceIsHarmless()
  par.cdef("typedef struct { int z; } test_twice_t;")
  par.cdef("typedef struct { int z; } test_twice_t;")
  lu.assertEquals(ffi.sizeof("test_twice_t"), 4)
end

function TestShm:testRefusals()
  lu.assertErrorMsgContains("ffipar.array: unknown ctype 'no_such_t'", par.array, "no_such_t", 3)
  lu.assertErrorMsgContains("ffipar.array: length must be an integer >= 0, got -1", par.array, "double", -1)
  lu.assertErrorMsgContains("ffipar.array: length must be an integer >= 0, got 1.5", par.array, "double", 1.5)
  lu.assertErrorMsgContains("too large", par.array, "double", 2^50)
  lu.assertErrorMsgContains("options must be a table", par.array, "double", 1, true)
  lu.assertErrorMsgContains("has no fixed size", par.array, "double[?]", 1)
  lu.assertErrorMsgContains("ffipar.array: ctype must be a type name", par.array, 5, 1)
  lu.assertErrorMsgContains("ffipar.new: unknown ctype", par.new, "nope_t")
  lu.assertErrorMsgContains("ffipar.new: bad initializer", par.new, "int32_t", "x")
  lu.assertErrorMsgContains("ffipar.cdef: declaration must be a string", par.cdef, 1)
  lu.assertErrorMsgContains("ffipar.cdef:", par.cdef, "this is not C")
end

function TestShm:testCheckedArrayBounds()
  local a = par.array("double", 4, { checked = true, name = "scores" })
  a[3] = 1
  lu.assertEquals(a[3], 1)
  lu.assertErrorMsgContains("index 4 out of bounds for checked array 'scores' of length 4",
    function() return a[4] end)
  lu.assertErrorMsgContains("index -1 out of bounds", function() a[-1] = 0 end)
  lu.assertErrorMsgContains("index 1.5 out of bounds", function() return a[1.5] end)
end

-- Two spawned functions of one phase are two strands: one slot written by
-- both is a race even when the first has finished before the second starts.
function TestShm:testRaceCheckNamesArrayIndexAndStrands()
  local a = par.array("int32_t", 8, { checked = true, name = "board" })
  local ok, err
  par.phase(function()
    local t1 = par.spawn(function(a) a[5] = 1 end, a)
    assert(t1:join(10))
    local t2 = par.spawn(function(a) a[5] = 2 end, a)
    ok, err = t2:join(10)
  end)
  lu.assertFalse(ok)
  lu.assertStrMatches(err, ".*race on checked array 'board' index 5: written by spawned function 1 "
    .. "%(par.spawn at test/test_shm.lua:%d+%) and spawned function 2 %(par.spawn at test/test_shm.lua:%d+%).*")
end

function TestShm:testNoRaceOutsidePhaseOrSameThread()
  local a = par.array("int32_t", 8, { checked = true })
  a[1] = 1
  lu.assertTrue(par.spawn(function(a) a[1] = 2 end, a):join(10))
  par.phase(function()
    a[2] = 1
    a[2] = 2                              -- same thread twice: fine
    lu.assertTrue(par.spawn(function(a) a[3] = 2 end, a):join(10))
  end)
  lu.assertEquals(a[1], 2)
end

function TestShm:testPhaseRethrowsAndEnds()
  lu.assertErrorMsgContains("inside", par.phase, function() error("inside") end)
  lu.assertEquals(require("ffipar.lib").C.ffipar_phase_current(), 0)
  lu.assertErrorMsgContains("ffipar.phase: argument #1 must be a function", par.phase, 1)
end

function TestShm:testArrayAccessCompiles()
  local a = par.array("double", 1000)
  local log = util.jit_log(function()
    for _ = 1, 100 do
      for i = 0, #a - 1 do a[i] = a[i] + i end
    end
  end)
  util.assert_compiles(lu, log)
  lu.assertEquals(a[999], 999 * 100)
end

function TestShm:testNewStructFieldAccessCompiles()
  par.cdef("typedef struct { int64_t hits; double sum; } test_stats_t;")
  local st = par.new("test_stats_t")
  local log = util.jit_log(function()
    for i = 1, 10000 do st.hits = st.hits + 1; st.sum = st.sum + i end
  end)
  util.assert_compiles(lu, log)
  lu.assertEquals(tonumber(st.hits), 10000)
end

-- A type name unique to this run of a test (par.cdef cannot redefine one).
local late_n = 0
local function late_name()
  late_n = late_n + 1
  return ("test_late%d_%d_t"):format(late_n, math.random(1e9))
end

-- fn(name) runs in a worker that started before `name` was declared and
-- received nothing since (it waits on a semaphore, which carries no value).
local function in_running_worker(start)
  local name = late_name()
  local go = par.semaphore(0)
  local t = start(function(go, name)
    local par = require "ffipar"
    assert(go:acquire(10))
    local a = par.array(name, 3)
    a[2].v = 7
    local p = par.new(name, { 5 })
    local ch = par.channel(2, name)
    assert(ch:push(p))
    par.cdef(("typedef struct { %s inner; } %s_outer_t;"):format(name, name))  -- uses it
    return a[2].v + p.v + ch:pop().v, ffi.sizeof(name .. "_outer_t")
  end, go, name)
  par.sleep(0.05)                      -- let the task start waiting
  par.cdef(("typedef struct { int32_t v; } %s;"):format(name))
  go:release()
  return t
end

function TestShm:testCdefAfterSpawnKnownByNameInRunningWorker()
  local t = in_running_worker(par.spawn)
  lu.assertEquals({ t:join(10) }, { true, 17, 4 })
end

function TestShm:testCdefAfterPoolStartKnownByNameInRunningTask()
  local pool = par.pool(1)
  lu.assertTrue(pool:submit(function() return 1 end):join(10))   -- the worker runs
  local f = in_running_worker(function(...) return pool:submit(...) end)
  lu.assertEquals({ f:join(10) }, { true, 17, 4 })
  pool:close()
end

-- A type declared with plain ffi.cdef is unknown to other threads: an
-- array of it is refused at the sender's line, and nothing leaks.
function TestShm:testArrayOfFfiCdefTypeRefusedAtCallerWithoutLeak()
  local name = late_name()
  ffi.cdef(("typedef struct { double x[1000]; } %s;"):format(name))
  local before = util.settled_live()
  for _ = 1, 5 do
    local a = par.array(name, 100)
    local ok, err = pcall(function()
      local t = par.spawn(function(a) return #a end, a)   -- not a tail call: keeps the line
      return t
    end)
    lu.assertFalse(ok)
    lu.assertStrContains(err, "test_shm.lua:")          -- the caller's line
    lu.assertStrContains(err, ("ffipar.spawn: argument #2 is a par.array of '%s'"):format(name))
    lu.assertStrContains(err, "declare it with par.cdef")
    local ch = par.channel(4)
    lu.assertErrorMsgContains("declare it with par.cdef", ch.push, ch, par.new(name))
    lu.assertErrorMsgContains(("argument #2 is a typed channel of '%s'"):format(name),
      par.spawn, function() end, par.channel(2, name))
  end
  lu.assertEquals(util.settled_live(), before)
end

-- A par.cdef'd type built on an ffi.cdef'd one passes the sender's check
-- but fails in the worker: a clear error there, and no reference leaked.
function TestShm:testUnknownTypeInReceiverIsClearAndDoesNotLeak()
  local base = late_name()
  ffi.cdef(("typedef struct { double x[1000]; } %s;"):format(base))
  local name = late_name()
  par.cdef(("typedef %s %s;"):format(base, name))
  local before = util.settled_live()
  for _ = 1, 5 do
    local a = par.array(name, 100)
    local ok, err = par.spawn(function(a) return #a end, a):join(10)
    lu.assertFalse(ok)
    lu.assertStrContains(err, ("received a par.array of '%s'"):format(name))
    lu.assertStrContains(err, "declare it with par.cdef")
  end
  lu.assertEquals(util.settled_live(), before)
end

-- Issue #11: ffi.typeof of a par.cdef'd typedef is taken where its name is.
function TestShm:testNamedCtypeOfACdefTypedef()
  par.cdef "typedef struct { int32_t a; double b; } test_typeof_t;"
  local ct = ffi.typeof("test_typeof_t")
  local a = par.array(ct, 3)
  a[1].b = 2.5
  local st = par.new(ct, { 4, 0.5 })
  lu.assertStrContains(tostring(a), "ffipar.array<test_typeof_t>[3]")
  local t = par.spawn(function(a, st) return a[1].b + st.a end, a, st)
  lu.assertEquals({ t:join(10) }, { true, 6.5 })
  -- a struct declared with plain ffi.cdef has no name workers can resolve
  ffi.cdef "typedef struct { int q; } test_plain_typeof_t;"
  lu.assertErrorMsgContains("ffipar.array: ctype must be a type name (string) or a named ctype",
    par.array, ffi.typeof("test_plain_typeof_t"), 1)
end

-- Issue #11: ffi's messages name par.cdef'd structs, not 'struct 325'.
function TestShm:testBadInitializerNamesTheStructs()
  par.cdef "typedef struct { int a; } test_init_a_t; typedef struct { double b; } test_init_b_t;"
  lu.assertErrorMsgContains("ffipar.new: bad initializer for 'test_init_a_t': cannot convert "
    .. "'test_init_b_t' to 'test_init_a_t'", par.new, "test_init_a_t", ffi.new("test_init_b_t"))
end
