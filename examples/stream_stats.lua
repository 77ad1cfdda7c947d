-- stream_stats.lua: statistics of a log or CSV stream, computed by worker
-- threads fed through ffipar channels.
--
--   reader (main) --batches of lines--> [lines channel] --> N analyzers
--   analyzers --partial aggregates--> [results channel] --> collector
--   collector: merges, prints a progress line on stderr, returns the totals
--
-- Formats (detected from the first lines, or --format): web server access
-- logs (combined/common log format), dpkg.log, apt history.log, syslog-style
-- lines, CSV with a header, or plain lines. Run with --help.
local par = require "ffipar"

local USAGE = [[
usage: luajit examples/stream_stats.lua [options] [FILE | -]

Reads a log or CSV stream (FILE, or standard input with "-"; default
/var/log/dpkg.log), fans its lines out to analyzer threads over ffipar
channels and prints counts, rates, top keys and percentiles.

options:
  --format F    combined | dpkg | apt | syslog | csv | lines (default: detect)
  --workers N   analyzer threads (default: CPUs)
  --top K       keys shown per table (default 10)
  --batch N     lines per channel message (default 512)
  --key COL     csv: column counted as keys (name or 1-based number; default: first text column)
  --value COL   csv: numeric column summarized (default: first numeric column)
  --every S     seconds between progress lines on stderr (default 1; 0: never)
  --quiet       no progress line
  -h, --help    this text
]]

---- command line ----

local opt = { format = "auto", workers = par.cpus(), top = 10, batch = 512, every = 1 }
local input
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local function val()
      i = i + 1
      if arg[i] == nil then io.stderr:write("stream_stats: " .. a .. " needs a value\n"); os.exit(2) end
      return arg[i]
    end
    local function num()
      local v = tonumber(val())
      if not v or v < 0 then io.stderr:write("stream_stats: " .. a .. " needs a number >= 0\n"); os.exit(2) end
      return v
    end
    if a == "-h" or a == "--help" then io.write(USAGE); os.exit(0)
    elseif a == "--format" then opt.format = val()
    elseif a == "--workers" then opt.workers = math.max(1, math.floor(num()))
    elseif a == "--top" then opt.top = math.max(1, math.floor(num()))
    elseif a == "--batch" then opt.batch = math.max(1, math.floor(num()))
    elseif a == "--key" then opt.key = val()
    elseif a == "--value" then opt.value = val()
    elseif a == "--every" then opt.every = num()
    elseif a == "--quiet" then opt.every = 0
    elseif a:sub(1, 2) == "--" then io.stderr:write("stream_stats: unknown option " .. a .. "\n" .. USAGE); os.exit(2)
    elseif input then io.stderr:write("stream_stats: one input only\n"); os.exit(2)
    else input = a end
    i = i + 1
  end
end
local FORMATS = { auto = 1, combined = 1, dpkg = 1, apt = 1, syslog = 1, csv = 1, lines = 1 }
if not FORMATS[opt.format] then
  io.stderr:write("stream_stats: unknown format '" .. opt.format .. "'\n"); os.exit(2)
end

input = input or "/var/log/dpkg.log"
local fh, name
if input == "-" then
  fh, name = io.stdin, "standard input"
else
  local err
  fh, err = io.open(input, "rb")
  if not fh then io.stderr:write("stream_stats: " .. err .. " (give a file, or - for stdin)\n"); os.exit(1) end
  name = input
end

---- formats: each parses one line into an aggregate ----
-- An aggregate: n lines, bad (not understood), count[dim][key] = n,
-- dist[dim][value] = n (exact; values are rounded to 4 significant digits
-- when a dimension grows past 20000 distinct values).

local MONTHS = { Jan = "01", Feb = "02", Mar = "03", Apr = "04", May = "05", Jun = "06",
  Jul = "07", Aug = "08", Sep = "09", Oct = "10", Nov = "11", Dec = "12" }

local function parse_combined(line, agg, add, sample)
  local ip, day, mon, year, hour, req, status, size =
    line:match('^(%S+) %S+ %S+ %[(%d+)/(%a+)/(%d+):(%d+):[^%]]*%] "([^"]*)" (%d%d%d) (%S+)')
  if not ip then return false end
  local method, path = req:match("^(%u+) (%S+)")
  add("status", status)
  add("status class", status:sub(1, 1) .. "xx")
  add("client", ip)
  add("method", method or "(malformed)")
  if path then add("path", (path:gsub("%?.*", ""))) end
  add("hour", ("%s-%s-%s %s:00"):format(year, MONTHS[mon] or mon, day, hour))
  local bytes = tonumber(size)
  if bytes then sample("response bytes", bytes) end
  return true
end

local function parse_dpkg(line, agg, add)
  local day, hour, rest = line:match("^(%d%d%d%d%-%d%d%-%d%d) (%d%d):%d%d:%d%d (.*)$")
  if not day then return false end
  local action, a2, a3 = rest:match("^(%S+) (%S+) ?(%S*)")
  if not action then return false end
  add("day", day)
  add("hour of day", hour)
  if action == "status" then
    add("action", "status")
    add("status", a2)
    if a3 ~= "" then add("package (status)", (a3:gsub(":.*", ""))) end
  elseif action == "startup" or action == "conffile" then
    add("action", action .. (action == "startup" and " " .. a2 or ""))
  else
    add("action", action)
    add("package", (a2:gsub(":.*", "")))
  end
  return true
end

local APT_OPS = { Install = "installed package", Upgrade = "upgraded package",
  Remove = "removed package", Purge = "purged package", Downgrade = "downgraded package",
  Reinstall = "reinstalled package" }

local function parse_apt(line, agg, add)
  local key, val = line:match("^([%w%-]+): (.*)$")
  if not key then return line == "" end
  add("field", key)
  if key == "Start-Date" then
    add("day", val:match("^(%S+)") or val)
  elseif key == "Commandline" then
    local prog, rest = val:match("^(%S+)(.*)$")
    add("command", prog and (prog .. " " .. (rest:match("%s([^%-%s]%S*)") or "")) or val)
  elseif APT_OPS[key] then
    for pkg in val:gmatch("([^%s,(]+) %(") do
      add(APT_OPS[key], (pkg:gsub(":.*", "")))
      add("operation", key)
    end
  end
  return true
end

local function parse_syslog(line, agg, add)
  local mon, day, hour, host, prog, msg = line:match("^(%a%a%a) +(%d+) (%d%d):%d%d:%d%d (%S+) ([^:%[%s]+)[^:]*: ?(.*)$")
  if not mon then
    local d, h
    d, h, host, prog, msg = line:match("^(%d%d%d%d%-%d%d%-%d%d)T(%d%d):[%d:.]+%S* (%S+) ([^:%[%s]+)[^:]*: ?(.*)$")
    if not d then return false end
    add("hour", d .. " " .. h .. ":00")
  else
    add("hour", ("%s %2d %s:00"):format(mon, tonumber(day), hour))
  end
  add("host", host)
  add("program", prog)
  for w in msg:gmatch("%a[%w_%-]+") do
    if #w > 3 then add("word", w:lower()) end
  end
  return true
end

local function parse_lines(line, agg, add, sample)
  sample("line length", #line)
  for w in line:gmatch("%a[%w_%-]+") do
    if #w > 3 then add("word", w:lower()) end
  end
  return true
end

-- Split a CSV line (quotes with "" escapes).
local function csv_fields(line)
  local out, pos, n = {}, 1, #line
  while pos <= n + 1 do
    if line:sub(pos, pos) == '"' then
      local buf, i = {}, pos + 1
      while i <= n do
        local c = line:sub(i, i)
        if c == '"' then
          if line:sub(i + 1, i + 1) == '"' then buf[#buf + 1] = '"'; i = i + 2 else i = i + 1; break end
        else buf[#buf + 1] = c; i = i + 1 end
      end
      out[#out + 1] = table.concat(buf)
      pos = (line:find(",", i, true) or n + 1) + 1
    else
      local e = line:find(",", pos, true) or n + 1
      out[#out + 1] = line:sub(pos, e - 1)
      pos = e + 1
    end
  end
  return out
end

local function parse_csv(line, agg, add, sample, cfg)
  local f = csv_fields(line)
  if #f < cfg.ncols then return false end
  if cfg.key then add(cfg.key_name, f[cfg.key]) end
  if cfg.value then
    local v = tonumber(f[cfg.value])
    if not v then return false end
    sample(cfg.value_name, v)
  end
  return true
end

local PARSERS = { combined = parse_combined, dpkg = parse_dpkg, apt = parse_apt,
  syslog = parse_syslog, csv = parse_csv, lines = parse_lines }

-- Guess the format from the first lines.
local function detect(lines)
  local votes = { combined = 0, dpkg = 0, apt = 0, syslog = 0, csv = 0 }
  local scratch = { count = {}, dist = {} }
  local nop = function() end
  for _, l in ipairs(lines) do
    if l ~= "" then
      for _, f in ipairs({ "combined", "dpkg", "syslog" }) do
        if PARSERS[f](l, scratch, nop, nop) then votes[f] = votes[f] + 1 end
      end
      if l:match("^[%w%-]+: ") then votes.apt = votes.apt + 1 end
    end
  end
  local ncomma = select(2, (lines[1] or ""):gsub(",", ""))
  if ncomma >= 1 then
    local same = 0
    for _, l in ipairs(lines) do if select(2, l:gsub(",", "")) == ncomma then same = same + 1 end end
    if same >= #lines * 0.8 then votes.csv = #lines * 0.9 end
  end
  local best, bv = "lines", 0
  for _, f in ipairs({ "combined", "dpkg", "syslog", "apt", "csv" }) do
    if votes[f] > bv and votes[f] >= #lines * 0.5 then best, bv = f, votes[f] end
  end
  return best
end

---- read the head, decide the format ----

local head = {}
for _ = 1, 20 do
  local l = fh:read("*l")
  if not l then break end
  head[#head + 1] = l
end
local format = opt.format == "auto" and detect(head) or opt.format

local cfg = {}
if format == "csv" then
  local header = csv_fields(table.remove(head, 1) or "")
  cfg.ncols = #header
  local sample = head[1] and csv_fields(head[1]) or {}
  local function column(spec, want_number)
    if spec then
      local i = tonumber(spec)
      if not i then for j, h in ipairs(header) do if h == spec then i = j end end end
      if not i or i < 1 or i > #header then
        io.stderr:write("stream_stats: no csv column '" .. spec .. "'\n"); os.exit(2)
      end
      return i
    end
    for j = 1, #header do
      if (tonumber(sample[j]) ~= nil) == want_number then return j end
    end
  end
  cfg.key = column(opt.key, false)
  cfg.value = column(opt.value, true)
  cfg.key_name = cfg.key and header[cfg.key]
  cfg.value_name = cfg.value and header[cfg.value]
end

---- workers ----

local lines_ch = par.channel(4 * opt.workers)     -- batches of lines
local results_ch = par.channel(4 * opt.workers)   -- partial aggregates

-- An analyzer: parse every line of every batch; send a partial aggregate
-- after each batch (so the collector's totals roll forward).
local function analyzer(lines_ch, results_ch, format, cfg)
  local parse = PARSERS[format]
  for batch in lines_ch:iter() do
    local agg = { n = 0, bad = 0, count = {}, dist = {} }
    local count, dist = agg.count, agg.dist
    local function add(dim, key)
      local t = count[dim]
      if not t then t = {}; count[dim] = t end
      t[key] = (t[key] or 0) + 1
    end
    local function sample(dim, v)
      local t = dist[dim]
      if not t then t = {}; dist[dim] = t end
      t[v] = (t[v] or 0) + 1
    end
    for line in batch:gmatch("[^\n]*") do
      if line ~= "" then
        agg.n = agg.n + 1
        if not parse(line, agg, add, sample, cfg) then agg.bad = agg.bad + 1 end
      end
    end
    assert(results_ch:push(agg))
  end
end

-- Round to 4 significant digits: keeps a distribution's distinct values bounded.
local function round4(v)
  if v == 0 or v ~= v then return v end
  local e = math.floor(math.log10(math.abs(v))) - 3
  local m = 10 ^ e
  return math.floor(v / m + 0.5) * m
end

-- The top 3 keys of a count table, as "key share%, ..." for the progress line.
local function top3(t)
  local best, total = {}, 0
  for k, c in pairs(t or {}) do
    total = total + c
    best[#best + 1] = { k, c }
  end
  table.sort(best, function(a, b) return a[2] > b[2] end)
  local out = {}
  for i = 1, math.min(3, #best) do
    out[i] = ("%s %.1f%%"):format(tostring(best[i][1]), 100 * best[i][2] / total)
  end
  return table.concat(out, ", ")
end

-- The collector: merge partial aggregates; a rolling progress line on
-- stderr (lines, rate over the last interval, the leading keys of `dim`).
local function collector(results_ch, every, dim)
  local par = require "ffipar"
  local tot = { n = 0, bad = 0, count = {}, dist = {}, distinct = {} }
  local t0, last, last_n = par.now(), par.now(), 0
  for agg in results_ch:iter() do
    tot.n, tot.bad = tot.n + agg.n, tot.bad + agg.bad
    for dim, t in pairs(agg.count) do
      local d = tot.count[dim] or {}
      tot.count[dim] = d
      for k, c in pairs(t) do d[k] = (d[k] or 0) + c end
    end
    for dim, t in pairs(agg.dist) do
      local d = tot.dist[dim] or {}
      tot.dist[dim] = d
      local n = tot.distinct[dim] or 0
      for v, c in pairs(t) do
        if n > 20000 then v = round4(v) end
        if not d[v] then n = n + 1 end
        d[v] = (d[v] or 0) + c
      end
      tot.distinct[dim] = n
    end
    local now = par.now()
    if every > 0 and now - last >= every then
      io.stderr:write(("\r%d lines, %.0f lines/s, %s: %s   "):format(tot.n,
        (tot.n - last_n) / (now - last), dim, top3(tot.count[dim])))
      last, last_n = now, tot.n
      io.stderr:flush()
    end
  end
  if every > 0 and par.now() - t0 >= every then io.stderr:write("\n") end
  tot.distinct = nil
  return tot
end

local analyzers = {}
for i = 1, opt.workers do
  analyzers[i] = par.spawn(analyzer, lines_ch, results_ch, format, cfg)
end
local MAIN_DIM = { combined = "status", dpkg = "action", apt = "operation", syslog = "program",
  csv = cfg.key_name or "-", lines = "word" }
local coll = par.spawn(collector, results_ch, opt.every, MAIN_DIM[format])

---- read and feed ----

local t0 = par.now()
local batch, nb = {}, 0
local function flush()
  if nb > 0 then
    assert(lines_ch:push(table.concat(batch, "\n", 1, nb)))
    nb = 0
  end
end
for _, l in ipairs(head) do nb = nb + 1; batch[nb] = l end
for l in fh:lines() do
  nb = nb + 1
  batch[nb] = l
  if nb >= opt.batch then flush() end
end
flush()
if fh ~= io.stdin then fh:close() end
lines_ch:close()
for i = 1, opt.workers do
  local ok, err = analyzers[i]:join()
  if not ok then io.stderr:write("stream_stats: analyzer failed: " .. tostring(err) .. "\n"); os.exit(1) end
end
results_ch:close()
local ok, tot = coll:join()
if not ok then io.stderr:write("stream_stats: collector failed: " .. tostring(tot) .. "\n"); os.exit(1) end
local elapsed = par.now() - t0

---- report ----

local function top(t, k)
  local keys = {}
  for key, c in pairs(t) do keys[#keys + 1] = { key, c } end
  table.sort(keys, function(a, b) if a[2] ~= b[2] then return a[2] > b[2] end return tostring(a[1]) < tostring(b[1]) end)
  return keys, #keys
end

local function percentile(sorted, total, p)
  local want = math.max(1, math.ceil(p / 100 * total))
  local acc = 0
  for _, e in ipairs(sorted) do
    acc = acc + e[2]
    if acc >= want then return e[1] end
  end
end

local function num(v)
  if v == math.floor(v) and math.abs(v) < 1e15 then return ("%d"):format(v) end
  return ("%.4g"):format(v)
end

print(("%s: %d lines (%s format), %d not understood, %.2f s, %.0f lines/s, %d analyzers")
  :format(name, tot.n, format, tot.bad, elapsed, tot.n / math.max(elapsed, 1e-9), opt.workers))

local dims = {}
for dim in pairs(tot.count) do dims[#dims + 1] = dim end
table.sort(dims)
for _, dim in ipairs(dims) do
  local keys, n = top(tot.count[dim], opt.top)
  local total = 0
  for _, e in ipairs(keys) do total = total + e[2] end
  print(("\n%s (%d distinct):"):format(dim, n))
  for i = 1, math.min(opt.top, n) do
    print(("  %8d  %5.1f%%  %s"):format(keys[i][2], 100 * keys[i][2] / total, tostring(keys[i][1])))
  end
end

local ddims = {}
for dim in pairs(tot.dist) do ddims[#ddims + 1] = dim end
table.sort(ddims)
for _, dim in ipairs(ddims) do
  local sorted = {}
  local total, sum = 0, 0
  for v, c in pairs(tot.dist[dim]) do sorted[#sorted + 1] = { v, c }; total = total + c; sum = sum + v * c end
  table.sort(sorted, function(a, b) return a[1] < b[1] end)
  print(("\n%s: n=%d sum=%s mean=%s min=%s p50=%s p90=%s p99=%s max=%s"):format(dim, total, num(sum),
    num(sum / total), num(sorted[1][1]), num(percentile(sorted, total, 50)),
    num(percentile(sorted, total, 90)), num(percentile(sorted, total, 99)), num(sorted[#sorted][1])))
end
