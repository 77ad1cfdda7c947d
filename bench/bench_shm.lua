-- Shared array access: an unchecked par.array against its raw pointer (the
-- same JIT code is the goal), and what check mode costs per element (debug
-- mode) beside the unchecked array, in a worker that runs as a strand.
local par = require "ffipar"

local N, REPS = 1e6, 20

local function kernel(a, n)
  for _ = 1, REPS do
    for i = 0, n - 1 do a[i] = a[i] * 0.5 + i end
  end
end

local function time_ns(a)
  local t0 = par.now()
  kernel(a, N)
  return (par.now() - t0) / (N * REPS) * 1e9
end

local arr = par.array("double", N)
local chk = par.array("double", N, { checked = true })

-- The kernel `reps` times over a, as one task of a pool of one worker in a
-- phase of its own (a strand), timed in the worker.
local pool
local function in_strand(a, reps)
  pool = pool or par.pool(1)
  return par.phase(function()
    local ok, ns = pool:submit(function(a, reps)
      local now = require("ffipar").now
      local t0 = now()
      for _ = 1, reps do
        for i = 0, #a - 1 do a[i] = a[i] * 0.5 + i end
      end
      return (now() - t0) / (#a * reps) * 1e9
    end, a, reps):join()
    assert(ok, ns)
    return ns
  end)
end

return {
  {
    name = "array a[i] unchecked (C = raw double*)",
    unit = "ns/elem",
    target = "same as the raw pointer (ratio ~1)",
    limit = { ratio = 1.15 },
    lua = function() return time_ns(arr) end,
    c = nil,
    baseline = function() return time_ns(arr:ptr()) end,
  },
  {
    -- Check mode's cost per element read and written, as the old checked
    -- case measured it: the kernel REPS times in one strand, so each slot
    -- is recorded once (one call to the shim with a CAS per read and per
    -- write) and then found recorded (one call, no atomic). The baseline is
    -- the same task on an unchecked array.
    name = "check mode a[i] read+write (C = unchecked)",
    unit = "ns/elem",
    target = "<= 20x unchecked (debug mode)",
    limit = { ratio = 20 },
    chart = false,
    lua = function() return in_strand(chk, REPS) end,
    baseline = function() return in_strand(arr, REPS) end,
  },
  {
    -- Where it is highest: every element touched once by a strand, each
    -- run a new phase, so every access records itself with a CAS (10-35 ns
    -- each on the development VM).
    name = "check mode a[i] read+write once (C = unchecked)",
    unit = "ns/elem",
    target = "<= 20x unchecked (debug mode)",
    limit = { ratio = 20 },
    chart = false,
    lua = function() return in_strand(chk, 1) end,
    baseline = function() return in_strand(arr, 1) end,
  },
}
