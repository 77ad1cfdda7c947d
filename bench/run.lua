-- bench/run.lua: `make bench`. Each bench/bench_*.lua returns a list of
-- cases { name, unit, target, limit = { abs, ratio, min_ratio }, lua = fn ->
-- measure, c = "command printing the C measure" } (or baseline = fn ->
-- measure, for a baseline measured in Lua, e.g. a raw pointer). Lua and C run alternately,
-- RUNS times each, in this one process run; the table shows medians and
-- the Lua/C ratio, and is written to bench/report/results.md.
-- Usage: luajit bench/run.lua [pattern] ; BENCH_RUNS=n sets the runs.
local RUNS = tonumber(os.getenv("BENCH_RUNS")) or 5
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

local rows = {}
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
      local lv, cv = {}, {}
      for _ = 1, RUNS do
        if case.lua then lv[#lv + 1] = case.lua() end
        collectgarbage()
        if case.c then cv[#cv + 1] = run_c(case.c) end
        if case.baseline then cv[#cv + 1] = case.baseline() end
      end
      local l, c = median(lv), median(cv)
      local ratio = (l and c and c > 0) and l / c or nil
      local verdict = ""
      if case.limit and l then
        local okabs = not case.limit.abs or l <= case.limit.abs
        local okratio = not case.limit.ratio or (ratio and ratio <= case.limit.ratio)
        if case.limit.min_ratio then okratio = ratio and ratio >= case.limit.min_ratio end
        verdict = (okabs and okratio) and "  met" or "  MISSED"
      end
      local row = { case.name, fmt(l), fmt(c), ratio and ("%.2f"):format(ratio) or "-",
        case.unit or "", (case.target or "") .. verdict }
      rows[#rows + 1] = row
      print(("%-46s %10s %10s %7s  %-8s %s"):format(unpack(row)))
      io.stdout:flush()
    end
  end
end

os.execute("mkdir -p bench/report")
local f = io.open("bench/report/results.md", "w")
f:write(("# ffipar benchmarks\n\nMedians of %d runs, `make bench`, %s, %d CPUs.\n\n"):format(
  RUNS, os.date("!%Y-%m-%d %H:%M UTC"), require("ffipar").cpus()))
f:write("| case | ffipar | C | ratio | unit | target |\n|---|---|---|---|---|---|\n")
for _, r in ipairs(rows) do f:write("| " .. table.concat(r, " | ") .. " |\n") end
f:close()
print("\nwritten: bench/report/results.md")
