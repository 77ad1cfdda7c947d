-- Pools: task round trip, and the two parallel jobs of the README (argmax
-- over 1e7 scores, the 4000x4000 Mandelbrot bitmap) with 1 and 2 workers
-- against C pthreads with the same split, in the same run.
local par = require "ffipar"

local ARGMAX_N = tonumber(os.getenv("BENCH_ARGMAX_N")) or 1e7
local MANDEL_N = tonumber(os.getenv("BENCH_MANDEL_N")) or 4000
-- The jobs' medians spread by +-5% on the 2-core VM from one run of the
-- bench to the next (C's own 2-over-1 speedups ranged 1.81-2.35 today), as
-- much as the 1.05x target's margin: 15 runs each.
local RUNS = 15

local sin, cos = math.sin, math.cos
local function score(i) return sin(0.001 * i) * cos(0.0007 * i) end

-- The kernel of examples/mandelbrot.lua, loaded from there.
local rows = require("util").mandelbrot_rows()

-- The second run of the job on a fresh pool: the first loads the code and
-- lets the JIT settle. (A warm-up on a small input can leave traces shaped
-- by the wrong data: the first Mandelbrot kernel ran 3-4% slower after one.)
local function timed(workers, job)
  local pool = par.pool(workers)
  job(pool)
  local t0 = par.now()
  job(pool)
  local t = par.now() - t0
  pool:close()
  return t
end

local function argmax(pool)
  pool:argmax(ARGMAX_N, score)
end

local function mandel(pool)
  local n = MANDEL_N
  local buf = par.array("uint8_t", math.floor((n + 7) / 8) * n)
  pool:parallel_for(n, rows, buf, n)
end

return {
  {
    -- A latency: the median of 50 batches of 100 round trips, so that the
    -- VM taking a core away now and then (tens of us to ms) does not count
    -- as ffipar's; the mean over all 5000 goes to stderr as it runs.
    name = "pool task round trip (submit+join)",
    unit = "us",
    target = "<= 10 us (peers: spawn only, 120-440 us)",
    limit = { abs = 10 },
    lua = function()
      local pool = par.pool(2)
      local f = function() end
      for _ = 1, 500 do pool:submit(f):join() end
      local batches, total = {}, 0
      for b = 1, 50 do
        local t0 = par.now()
        for _ = 1, 100 do pool:submit(f):join() end
        batches[b] = (par.now() - t0) / 100 * 1e6
        total = total + batches[b]
      end
      pool:close()
      table.sort(batches)
      io.stderr:write(("  round trip: mean %.2f us, median batch %.2f us\n"):format(total / 50, batches[25]))
      return (batches[25] + batches[26]) / 2
    end,
  },
  {
    name = "argmax 1e7, 1 worker (C: 1 thread)",
    runs = RUNS,
    unit = "s",
    lua = function() return timed(1, argmax) end,
    c = "bench/c/argmax " .. ARGMAX_N .. " 1",
  },
  {
    name = "argmax 1e7, 2 workers (C: 2 threads)",
    runs = RUNS,
    unit = "s",
    target = "<= 1.05x C",
    limit = { ratio = 1.05 },
    lua = function() return timed(2, argmax) end,
    c = "bench/c/argmax " .. ARGMAX_N .. " 2",
  },
  {
    name = "argmax speedup, 2 workers over 1",
    unit = "x",
    target = ">= 1.85x",
    limit = { min = 1.85 },
    -- From the medians above; the C column is C's own speedup.
    derive = function(r)
      local one, two = r["argmax 1e7, 1 worker (C: 1 thread)"], r["argmax 1e7, 2 workers (C: 2 threads)"]
      return one.lua / two.lua, one.c / two.c
    end,
  },
  {
    name = "mandelbrot 4000, 1 worker (C: 1 thread)",
    runs = RUNS,
    unit = "s",
    lua = function() return timed(1, mandel) end,
    c = "bench/c/mandelbrot " .. MANDEL_N .. " 1",
  },
  {
    name = "mandelbrot 4000, 2 workers (C: 2 threads)",
    runs = RUNS,
    unit = "s",
    target = "<= 1.05x C",
    limit = { ratio = 1.05 },
    lua = function() return timed(2, mandel) end,
    c = "bench/c/mandelbrot " .. MANDEL_N .. " 2",
  },
  {
    name = "mandelbrot speedup, 2 workers over 1",
    unit = "x",
    target = ">= 1.85x",
    limit = { min = 1.85 },
    derive = function(r)
      local one, two = r["mandelbrot 4000, 1 worker (C: 1 thread)"], r["mandelbrot 4000, 2 workers (C: 2 threads)"]
      return one.lua / two.lua, one.c / two.c
    end,
  },
}
