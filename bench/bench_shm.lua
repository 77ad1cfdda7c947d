-- Shared array access: an unchecked par.array against its raw pointer (the
-- same JIT code is the goal), and what a checked array costs (debug mode).
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
    name = "array a[i] checked, in a phase (C = raw)",
    unit = "ns/elem",
    target = "debug mode: cost shown, no target",
    chart = false,
    lua = function() return par.phase(time_ns, chk) end,
    baseline = function() return time_ns(arr:ptr()) end,
  },
}
