-- 2 threads x N increments of one shared counter: par.atomic:add(1) against
-- C's atomic_fetch_add, and par.mutex lock/increment/unlock against
-- pthread_mutex, both timed from a barrier to the last worker's finish
-- (spawning and joining are not counted). ns per increment.
local par = require "ffipar"

local N = 1000000

-- Run body(shared, n) in 2 workers released together by a barrier; returns
-- ns per increment over both, and checks the count.
local function two_workers(body, shared, check)
  local b = par.barrier(2)
  local ts = {}
  for i = 1, 2 do
    ts[i] = par.spawn(function(b, shared, n)
      b:wait()
      local t0 = par.now()
      body(shared, n)
      return t0, par.now()
    end, b, shared, N)
  end
  local t0, t1 = math.huge, -math.huge
  for i = 1, 2 do
    local ok, a, z = ts[i]:join()
    assert(ok, a)
    t0, t1 = math.min(t0, a), math.max(t1, z)
  end
  assert(check() == 2 * N, "lost increments")
  return (t1 - t0) / (2 * N) * 1e9
end

return {
  {
    name = "atomic add, 2 threads x 1e6",
    unit = "ns/inc",
    target = "<= 2x C",
    limit = { ratio = 2 },
    lua = function()
      local n = par.atomic(0)
      return two_workers(function(n, iters)
        for _ = 1, iters do n:add(1) end
      end, n, function() return n:load() end)
    end,
    c = "bench/c/atomic_add " .. N,
  },
  {
    name = "mutex lock+inc+unlock, 2 threads x 1e6",
    unit = "ns/inc",
    target = "<= 1.5x C",
    limit = { ratio = 1.5 },
    lua = function()
      local shared = { m = par.mutex(), count = par.array("double", 1) }
      return two_workers(function(s, iters)
        local m, p = s.m, s.count:ptr()
        for _ = 1, iters do
          m:lock()
          p[0] = p[0] + 1
          m:unlock()
        end
      end, shared, function() return shared.count[0] end)
    end,
    c = "bench/c/mutex_add " .. N,
  },
}
