-- bench/run.lua: `make bench`. Each bench/bench_*.lua returns a list of
-- cases { name, unit, target, limit = { abs, ratio, min_ratio }, lua = fn ->
-- measure, c = "command printing the C measure" } (or baseline = fn ->
-- measure, for a baseline measured in Lua, e.g. a raw pointer), or derive =
-- fn(results) -> ffipar value, C value, computed from earlier cases' medians
-- (results[name] = { lua = , c = }). limit.min: the ffipar value must be at
-- least this (speedups). case.runs: more runs than the default, for a case
-- whose spread is wider than its target's margin. Lua and C run alternately
-- (each first in every other round), RUNS (9) or case.runs times each, in
-- this one process run; the table shows medians and the Lua/C ratio, and is
-- written to bench/report/results.md, with a chart (bench/report/chart.png,
-- gnuplot).
-- Usage: luajit bench/run.lua [pattern] ; BENCH_RUNS=n sets the runs.
local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 9
local pattern = arg[1]

local function ls(glob)
  local out, p = {}, io.popen("ls " .. glob .. " 2>/dev/null")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  return out
end

local function median(t)
  table.sort(t)
  local n = #t
  if n == 0 then return nil end
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local function run_c(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  local out = p:read("*a")
  p:close()
  return tonumber(out:match("[%d%.eE+-]+"))
end

local rows, results = {}, {}
local function fmt(v)
  if v == nil then return "-" end
  if v >= 100 then return ("%.0f"):format(v) end
  if v >= 1 then return ("%.2f"):format(v) end
  return ("%.3f"):format(v)
end

print(("%-46s %10s %10s %7s  %-8s %s"):format("case", "ffipar", "C", "ratio", "unit", "target"))
for _, file in ipairs(ls("bench/bench_*.lua")) do
  local cases = dofile(file)
  for _, case in ipairs(cases) do
    if not pattern or case.name:find(pattern, 1, true) or file:find(pattern, 1, true) then
      local l, c, runs
      if case.derive then
        l, c = case.derive(results)
      else
        local lv, cv = {}, {}
        local function lua_side() if case.lua then lv[#lv + 1] = case.lua() end collectgarbage() end
        local function c_side()
          if case.c then cv[#cv + 1] = run_c(case.c) end
          if case.baseline then cv[#cv + 1] = case.baseline() end
          collectgarbage()    -- a baseline's garbage is not left for the next Lua side
        end
        -- Which side goes first alternates: on this shared VM the slot in a
        -- round alone moves a median by a few per cent.
        runs = os.getenv("BENCH_RUNS") and RUNS or case.runs or RUNS
        for r = 1, runs do
          if r % 2 == 1 then lua_side(); c_side() else c_side(); lua_side() end
        end
        l, c = median(lv), median(cv)
      end
      results[case.name] = { lua = l, c = c }
      local ratio = (not case.derive and l and c and c > 0) and l / c or nil
      local verdict = ""
      if case.limit and l then
        local okabs = not case.limit.abs or l <= case.limit.abs
        local okratio = not case.limit.ratio or (ratio and ratio <= case.limit.ratio)
        local okmin = not case.limit.min or l >= case.limit.min
        verdict = (okabs and okratio and okmin) and "  met" or "  MISSED"
      end
      local row = { case.name, fmt(l), fmt(c), ratio and ("%.2f"):format(ratio) or "-",
        case.unit or "", (case.target or "") .. verdict, ratio = ratio,
        speedup = case.derive and l, cspeedup = case.derive and c, nochart = case.chart == false,
        runs = runs }
      rows[#rows + 1] = row
      print(("%-46s %10s %10s %7s  %-8s %s"):format(unpack(row)))
      io.stdout:flush()
    end
  end
end

os.execute("mkdir -p bench/report")
local f = io.open("bench/report/results.md", "w")
f:write(("# ffipar benchmarks\n\nMedians of the runs, `make bench`, %s, %d CPUs.\n\n"):format(
  os.date("!%Y-%m-%d %H:%M UTC"), require("ffipar").cpus()))
f:write("| case | ffipar | C | ratio | unit | target | runs |\n|---|---|---|---|---|---|---|\n")
for _, r in ipairs(rows) do f:write("| " .. table.concat(r, " | ") .. " | " .. (r.runs or "-") .. " |\n") end
f:write("\n![speedups and ratios to C](chart.png)\n")
f:close()
print("\nwritten: bench/report/results.md")

-- The chart: ffipar/C ratio per case, and 2-over-1 speedups (ffipar and C).
local dat = io.open("bench/report/chart.dat", "w")
local n = 0
for _, r in ipairs(rows) do
  local label = r[1]:gsub("%s*%(.*%)", ""):gsub('"', "")
  if r.nochart then
    -- left out: a debug-mode cost would flatten the scale
  elseif r.ratio then
    dat:write(('"%s" %.3f 0 0\n'):format(label, r.ratio)); n = n + 1
  elseif r.speedup then
    dat:write(('"%s" 0 %.3f %.3f\n'):format(label, r.speedup, r.cspeedup or 0)); n = n + 1
  end
end
dat:close()
if n > 0 and os.execute("command -v gnuplot >/dev/null 2>&1") == 0 then
  local gp = io.open("bench/report/chart.gp", "w")
  gp:write([[
set terminal pngcairo size 1100,600 font ",10"
set output "bench/report/chart.png"
set title "ffipar: ratio to plain C (lower is better) and 2-worker speedup (higher is better)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -45 scale 0
set rmargin 22
set yrange [0:*]
set grid ytics
set key top left
plot "bench/report/chart.dat" using 2:xtic(1) title "ffipar / C", \
     "" using 3 title "speedup, ffipar", "" using 4 title "speedup, C", \
     1 with lines lt 0 notitle
]])
  gp:close()
  if os.execute("gnuplot bench/report/chart.gp 2>/dev/null") == 0 then
    print("written: bench/report/chart.png")
  end
end
os.remove("bench/report/chart.gp")
