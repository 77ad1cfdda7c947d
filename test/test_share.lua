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
