-- best_move.lua: pick the best of millions of candidate moves, on every core.
--
-- A 2-opt improver for a random travelling-salesman tour. Each step scores
-- every 2-opt move (reverse the tour between positions i+1 and j) with a
-- pure function over shared arrays, keeps the best (pool:argmax), and
-- applies it. The same steps run serially and then in parallel; the program
-- prints both timings and checks that both chose exactly the same moves.
-- With --checked the arrays are checked arrays: every access is
-- bounds-checked and two chunks touching one slot, one of them writing,
-- would be reported (FFIPAR_CHECK=1 does that and checks the Lua side too).
--
-- usage: luajit examples/best_move.lua [-n CITIES] [-s STEPS] [-w WORKERS] [--seed S] [--checked]
local par = require "ffipar"

local function usage(code)
  io.write([[
usage: best_move.lua [-n CITIES] [-s STEPS] [-w WORKERS] [--seed S] [--checked]
  -n CITIES   cities in the tour (default 1500: 2.25 million moves a step)
  -s STEPS    improvement steps (default 20)
  -w WORKERS  pool workers (default: par.cpus())
  --seed S    random seed (default 42)
  --checked   run on checked arrays (bounds and race check; slower)
  -h, --help  this text
]])
  os.exit(code)
end

local m, steps, workers, seed, checked = 1500, 20, par.cpus(), 42, false
local i = 1
while arg[i] do
  local a = arg[i]
  if a == "-h" or a == "--help" then usage(0)
  elseif a == "-n" then m = tonumber(arg[i + 1]); i = i + 1
  elseif a == "-s" then steps = tonumber(arg[i + 1]); i = i + 1
  elseif a == "-w" then workers = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--seed" then seed = tonumber(arg[i + 1]); i = i + 1
  elseif a == "--checked" then checked = true
  else io.stderr:write("unknown argument: ", a, "\n"); usage(2) end
  i = i + 1
end
for name, v in pairs({ ["-n"] = m, ["-s"] = steps, ["-w"] = workers, ["--seed"] = seed }) do
  if not v or v ~= math.floor(v) or v < (name == "-n" and 4 or name == "--seed" and 0 or 1) then
    io.stderr:write(name, " needs a whole number", name == "-n" and " >= 4" or "", "\n")
    os.exit(2)
  end
end

local opts = { checked = checked }
local xs, ys = par.array("double", m, opts), par.array("double", m, opts)
local function new_tour()
  local t = par.array("int32_t", m, opts)
  for k = 0, m - 1 do t[k] = k end
  return t
end
math.randomseed(seed)
for k = 0, m - 1 do xs[k], ys[k] = math.random(), math.random() end

-- The gain of move k (k = i * m + j, 0 <= i < j - 1): replace edges
-- (t[i], t[i+1]) and (t[j], t[j+1]) by (t[i], t[j]) and (t[i+1], t[j+1]).
-- (No closures inside: creating one per call would keep the JIT out.)
local function dist(xs, ys, p, q)
  local dx, dy = xs[p] - xs[q], ys[p] - ys[q]
  return math.sqrt(dx * dx + dy * dy)
end

local function gain(k, xs, ys, t, m)
  local i, j = math.floor(k / m), k % m
  if j <= i + 1 or (i == 0 and j == m - 1) then return -math.huge end
  local a, b, c, d = t[i], t[i + 1], t[j], t[(j + 1) % m]
  return dist(xs, ys, a, b) + dist(xs, ys, c, d) - dist(xs, ys, a, c) - dist(xs, ys, b, d)
end

local function apply(t, k)
  local lo, hi = math.floor(k / m) + 1, k % m
  while lo < hi do
    t[lo], t[hi] = t[hi], t[lo]
    lo, hi = lo + 1, hi - 1
  end
end

local function length(t)
  local s = 0
  for k = 0, m - 1 do
    local p, q = t[k], t[(k + 1) % m]
    s = s + math.sqrt((xs[p] - xs[q]) ^ 2 + (ys[p] - ys[q]) ^ 2)
  end
  return s
end

local function improve(best_of)
  local t = new_tour()
  local moves = {}
  local t0 = par.now()
  for _ = 1, steps do
    local g, k = best_of(t)
    if not k or g <= 1e-12 then break end
    moves[#moves + 1] = k
    apply(t, k)
  end
  return t, moves, par.now() - t0
end

local function serial(t)
  local best, at = -math.huge, nil
  for k = 0, m * m - 1 do
    local g = gain(k, xs, ys, t, m)
    if g > best then best, at = g, k end
  end
  return best, at
end

local pool = par.pool(workers)
local function parallel(t) return pool:argmax(m * m, gain, xs, ys, t, m) end

local start = length(new_tour())
local t1, moves1, time1 = improve(serial)
local t2, moves2, time2 = improve(parallel)
pool:close()

local same = #moves1 == #moves2
for k = 1, #moves1 do same = same and moves1[k] == moves2[k] end
print(("%d cities, %d candidate moves a step, %d steps%s"):format(m, m * m, #moves2,
  checked and " (checked arrays)" or ""))
print(("tour length %.4f -> %.4f"):format(start, length(t2)))
print(("serial   : %.3f s"):format(time1))
print(("parallel : %.3f s on %d workers (%.2fx)"):format(time2, workers, time1 / time2))
print(same and "both chose the same moves" or "MOVES DIFFER")
os.exit(same and 0 or 1)
