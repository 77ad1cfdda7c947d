-- The color gate: uncontended enter+leave, same-color throughput on two
-- threads, color-switch handoff latency (threads pinned), and fairness (an
-- exclusive thread against a busy color). C baselines: bench/c/gate_base.c.
local par = require "ffipar"

local G = "bench/c/gate_base "

local function uncontended()
  local g = par.gate()
  local n = 1e7
  for _ = 1, 1000 do g:enter(1); g:leave() end
  local t0 = par.now()
  for _ = 1, n do
    g:enter(1)
    g:leave()
  end
  return (par.now() - t0) / n * 1e9
end

-- Two workers enter and leave one color for `seconds`; total M ops/s.
local function same_color(seconds)
  return function()
    local g = par.gate()
    local flags = par.array("int32_t", 2)        -- [0] go, [1] stop
    local ts = {}
    for i = 1, 2 do
      ts[i] = par.spawn(function(g, flags)
        -- (a call in the loop, so the compiled loop reloads the flag)
        while flags[0] == 0 do require("ffipar").now() end
        local n = 0
        while flags[1] == 0 do
          for _ = 1, 1000 do g:enter(1); g:leave() end
          n = n + 1000
        end
        return n
      end, g, flags)
    end
    par.sleep(0.05)                               -- both workers up and spinning
    local t0 = par.now()
    flags[0] = 1
    par.sleep(seconds)
    flags[1] = 1
    local total = 0
    for i = 1, 2 do
      local ok, n = ts[i]:join(30)
      assert(ok, n)
      total = total + n
    end
    return total / (par.now() - t0) / 1e6
  end
end

-- Two workers pinned to CPUs 0 and 1 ping-pong between colors 1 and 2
-- (2 us sections); each sample is the time from one's leave to the other's
-- return from enter. Returns the median, in us.
local function handoff()
  local g = par.gate()
  local shm = par.array("double", 2)             -- [0] left_at, [1] last color
  local rounds = 5000
  local samples = par.array("double", 2 * rounds)
  local ts = {}
  for me = 1, 2 do
    ts[me] = par.spawn(function(g, shm, samples, me, rounds)
      local ffi = require "ffi"
      local par = require "ffipar"
      pcall(ffi.cdef, "int sched_setaffinity(int pid, size_t size, const void *mask);")
      local mask = ffi.new("uint64_t[16]")
      mask[0] = 2 ^ ((me - 1) % par.cpus())
      ffi.C.sched_setaffinity(0, 128, mask)
      local n, base = 0, (me - 1) * rounds
      for _ = 1, rounds do
        g:enter(me)
        if shm[1] ~= me and shm[1] ~= 0 then
          samples[base + n] = par.now() - shm[0]
          n = n + 1
        end
        local t = par.now() + 2e-6
        while par.now() < t do end
        shm[0] = par.now()
        shm[1] = me
        g:leave()
      end
      return n
    end, g, shm, samples, me, rounds)
  end
  local all = {}
  for me = 1, 2 do
    local ok, n = ts[me]:join(60)
    assert(ok, n)
    for i = 0, n - 1 do all[#all + 1] = samples[(me - 1) * rounds + i] end
  end
  if #all == 0 then return nil end
  table.sort(all)
  return all[math.floor(#all / 2) + 1] * 1e6
end

-- Two workers keep color 1 busy (20 us sections, back to back); the main
-- thread asks for exclusive entry every 200 us (0.2 s deadline) for
-- `seconds`. Returns the average or the maximum wait, in us.
local function fairness(seconds, want_max)
  return function()
    local g = par.gate()
    local stop = par.array("int32_t", 1)
    local ts = {}
    for i = 1, 2 do
      ts[i] = par.spawn(function(g, stop)
        local par = require "ffipar"
        local n = 0
        while stop[0] == 0 do
          g:enter(1)
          local t = par.now() + 20e-6
          while par.now() < t do end
          g:leave()
          n = n + 1
        end
        return n
      end, g, stop)
    end
    par.sleep(0.02)
    local t0 = par.now()
    local sum, n, max, timeouts = 0, 0, 0, 0
    while par.now() - t0 < seconds do
      local w0 = par.now()
      if g:enter(nil, 0.2) then
        local w = par.now() - w0
        sum, n = sum + w, n + 1
        if w > max then max = w end
        local t = par.now() + 20e-6
        while par.now() < t do end
        g:leave()
      else
        timeouts = timeouts + 1
      end
      local t = par.now() + 200e-6
      while par.now() < t do end
    end
    stop[0] = 1
    for i = 1, 2 do assert(ts[i]:join(30)) end
    if want_max then return max * 1e6 end
    return sum / math.max(n, 1) * 1e6
  end
end

return {
  {
    name = "gate enter+leave, uncontended (C: mutex)",
    unit = "ns", target = "<= 30 ns", limit = { abs = 30 },
    lua = uncontended, c = G .. "lock mutex 20000000",
  },
  {
    name = "gate enter+leave, uncontended (C: rwlock rd)",
    unit = "ns", target = "<= 30 ns", limit = { abs = 30 },
    lua = uncontended, c = G .. "lock rwlock 20000000",
  },
  {
    name = "gate enter+leave from C (C column only)",
    unit = "ns", c = G .. "lock gate 20000000",
  },
  {
    name = "same color, 2 threads (C: rwlock rd)",
    unit = "Mops/s", target = "compare (higher is better)",
    lua = same_color(0.3), c = G .. "same rwlock 0.3",
  },
  {
    name = "same color, 2 threads, gate from C",
    unit = "Mops/s", c = G .. "same gate 0.3",
  },
  {
    name = "color-switch handoff, pinned, median (C: condvar)",
    unit = "us", target = "<= 10 us", limit = { abs = 10 },
    lua = handoff, c = G .. "handoff cond 20000",
  },
  {
    name = "color-switch handoff, pinned, median, gate from C",
    unit = "us", c = G .. "handoff gate 20000",
  },
  {
    name = "fairness: exclusive vs busy color, avg wait",
    unit = "us", target = "served (C: same in C)",
    lua = fairness(0.5, false), c = G .. "fair gate 0.5 avg",
  },
  {
    name = "fairness: exclusive vs busy color, max wait",
    unit = "us", target = "served (C: same in C)",
    lua = fairness(0.5, true), c = G .. "fair gate 0.5 max",
  },
}
