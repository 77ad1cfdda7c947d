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

-- Rows [lo, hi) of the bitmap into buf (ceil(N/8) bytes a row, first pixel
-- in the high bit; a pixel is set when 50 iterations stay within radius 2).
-- The escape test runs every 5 iterations: once |z| > 2 it only grows (or
-- overflows to NaN, which also fails the final test), so the bitmap is the
-- same as testing every iteration, with a tenth of the loop exits.
local function rows(lo, hi, buf, N)
  local band, rshift, lshift = bit.band, bit.rshift, bit.lshift
  local rowbytes = math.floor((N + 7) / 8)
  for y = lo, hi - 1 do
    local Ci = 2.0 * y / N - 1.0
    local base = y * rowbytes
    local byte = 0
    for x = 0, N - 1 do
      local Cr = 2.0 * x / N - 1.5
      local Zr, Zi, Tr, Ti = 0.0, 0.0, 0.0, 0.0
      local n = 0
      repeat
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        Zi = 2.0 * Zr * Zi + Ci; Zr = Tr - Ti + Cr; Tr = Zr * Zr; Ti = Zi * Zi
        n = n + 5
      until n == 50 or Tr + Ti > 4.0
      byte = byte + byte
      if Tr + Ti <= 4.0 then byte = byte + 1 end
      if band(x, 7) == 7 then buf[base + rshift(x, 3)] = byte; byte = 0 end
    end
    local r = band(N, 7)                -- a last, partial byte: pad with zeros
    if r ~= 0 then buf[base + rowbytes - 1] = lshift(byte, 8 - r) end
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
