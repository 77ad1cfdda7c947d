-- mandelbrot.lua: the Benchmarks Game Mandelbrot bitmap, in parallel.
--
-- Writes an N x N portable bitmap (PBM "P4") of the Mandelbrot set, rows
-- computed by a pool's workers straight into one shared buffer. The output
-- is byte-identical whatever the number of workers.
--
-- usage: luajit examples/mandelbrot.lua [N] [-w WORKERS] [-o FILE] [--check]
local par = require "ffipar"

local function usage(code)
  io.write([[
usage: mandelbrot.lua [N] [-w WORKERS] [-o FILE] [--check]
  N           width and height in pixels (default 4000)
  -w WORKERS  pool workers (default: par.cpus())
  -o FILE     write the bitmap to FILE (default: standard output)
  --check     also render with 1 worker, compare the bytes, print timings
  -h, --help  this text
]])
  os.exit(code)
end

local N, workers, outfile, check = 4000, par.cpus(), nil, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "-h" or a == "--help" then usage(0)
  elseif a == "-w" then workers = tonumber(arg[i + 1]); i = i + 1
  elseif a == "-o" then outfile = arg[i + 1]; i = i + 1
  elseif a == "--check" then check = true
  elseif tonumber(a) then N = tonumber(a)
  else io.stderr:write("unknown argument: ", a, "\n"); usage(2) end
  i = i + 1
end
if not N or N < 1 or N ~= math.floor(N) then io.stderr:write("N must be a whole number >= 1\n"); os.exit(2) end
if not workers or workers < 1 or workers ~= math.floor(workers) then
  io.stderr:write("-w needs a whole number >= 1\n"); os.exit(2)
end

-- A double read back as its bits: Tr + Ti in rows() below. A named type,
-- so that every call (and every worker) uses the same ctype.
par.cdef "typedef union { double d; int64_t bits; } mandel_bits;"

-- Rows [lo, hi) of the bitmap into buf (ceil(N/8) bytes a row, first pixel
-- in the high bit; a pixel is set when 50 iterations stay within radius 2).
--
-- The escape test runs every 5 iterations: once |z| > 2 it only grows (and
-- 5 iterations from |z| <= 2 cannot overflow), so the bitmap is the same as
-- testing every iteration. A row is computed in 10 passes of 5 iterations
-- over the pixels still inside, each pass compacting the list in place.
-- The pass has no branch that depends on a pixel, so the JIT compiles it
-- into one loop trace that never exits early, and neighbouring pixels'
-- iterations overlap in the CPU. (With `if Tr + Ti <= 4.0 then` the trace
-- is left and re-entered for each pixel that goes the other way: 1.5x
-- slower. README: "Writing kernels".) The test is integer arithmetic on the
-- bits of Tr + Ti: non-negative doubles order like their bit patterns, so
-- FOUR - bits is negative exactly when Tr + Ti > 4, and its sign bit is the
-- escape. That keeps the test off the floating-point units, which the
-- iterations keep busy (math.floor/math.min arithmetic instead: 8% slower).
local function rows(lo, hi, buf, N)
  local ffi = require "ffi"
  local band, rshift, bor = bit.band, bit.rshift, bit.bor
  local rowbytes = math.floor((N + 7) / 8)
  local px = ffi.new("int32_t[?]", N)   -- the pixels still inside, in order,
  local cr = ffi.new("double[?]", N)    -- with their c and z
  local zr = ffi.new("double[?]", N)
  local zi = ffi.new("double[?]", N)
  local t = ffi.new("mandel_bits")
  local FOUR = 0x4010000000000000LL     -- the bits of 4.0
  for y = lo, hi - 1 do
    local Ci = 2.0 * y / N - 1.0
    for x = 0, N - 1 do px[x] = x; cr[x] = 2.0 * x / N - 1.5; zr[x] = 0.0; zi[x] = 0.0 end
    local m = N
    for _ = 1, 10 do
      local j = 0LL
      for k = 0, m - 1 do
        local Cr, Zr, Zi = cr[k], zr[k], zi[k]
        local Tr, Ti = Zr * Zr, Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        px[j] = px[k]; cr[j] = Cr; zr[j] = Zr; zi[j] = Zi
        t.d = Tr + Ti
        j = j + 1 - rshift(FOUR - t.bits, 63)   -- keep the pixel while Tr + Ti <= 4
      end
      m = tonumber(j)
      if m == 0 then break end
    end
    local base = y * rowbytes
    for b = base, base + rowbytes - 1 do buf[b] = 0 end
    for k = 0, m - 1 do
      local x = px[k]
      local o = base + rshift(x, 3)
      buf[o] = bor(buf[o], rshift(128, band(x, 7)))
    end
  end
end

local function render(w)
  local buf = par.array("uint8_t", math.floor((N + 7) / 8) * N)
  local pool = par.pool(w)
  local t0 = par.now()
  pool:parallel_for(N, rows, buf, N)
  local t = par.now() - t0
  pool:close()
  return buf, t
end

local buf, t = render(workers)
local bytes = require("ffi").string(buf:ptr(), #buf)
local out = outfile and assert(io.open(outfile, "wb")) or io.stdout
out:write(("P4\n%d %d\n"):format(N, N), bytes)
if outfile then out:close() end

if check then
  local buf1, t1 = render(1)
  local same = require("ffi").string(buf1:ptr(), #buf1) == bytes
  io.stderr:write(("%dx%d: 1 worker %.3f s, %d workers %.3f s, speedup %.2fx, output %s\n")
    :format(N, N, t1, workers, t, t1 / t, same and "identical" or "DIFFERENT"))
  if not same then os.exit(1) end
end
