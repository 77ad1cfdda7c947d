-- nvim_fuzzy.lua: fuzzy-find a line in a big source tree from inside
-- Neovim, on every core, without freezing the editor.
--
-- The job: score every line of every file under a directory (default: the
-- C headers in /usr/include, about 2.5 million lines) against a fuzzy query
-- (the letters in order, as fzf and Telescope match), keep the 10 best
-- lines. Pool workers list, read and score the files; each task sends its
-- progress through a channel and returns its best lines. The editor's loop
-- only collects: it gets a callback per finished task and per batch of
-- progress (ffipar.uv on vim.loop), merges, and puts the result in the
-- quickfix list. A 10 ms timer on the same loop measures how responsive the
-- editor stayed while both cores were busy.
--
-- Neovim (0.7 has no -l; the script waits on the loop itself when there is
-- no UI, so the result arrives before :qa):
--   LUA_PATH='ffi/?.lua;;' nvim --headless -u NONE -c 'luafile examples/nvim_fuzzy.lua' -c 'qa!'
--   FUZZY_QUERY='pthmtxlck' FUZZY_ROOT=/usr/include nvim ...     (the same settings as below)
--   in a running Neovim: :let $FUZZY_QUERY = 'sockaddr' | luafile examples/nvim_fuzzy.lua
--   (it returns at once; :copen shows the matches when they are in)
-- The same job under plain luv:
--   LUA_PATH='ffi/?.lua;;' luajit examples/nvim_fuzzy.lua [QUERY [ROOT]] [--check]
--   --check also runs the search serially and checks that both agree.
local par = require "ffipar"

local in_nvim = rawget(_G, "vim") ~= nil
local uv = in_nvim and vim.loop or require "luv"
local uvpar = require("ffipar.uv").new(uv)
local headless = not in_nvim or #vim.api.nvim_list_uis() == 0

local query = os.getenv("FUZZY_QUERY") or "pthmtxlck"
local root = os.getenv("FUZZY_ROOT") or "/usr/include"
local check = os.getenv("FUZZY_CHECK") == "1"
local TOP = 10

if not in_nvim then
  local pos = {}
  for _, a in ipairs(arg) do
    if a == "--check" then check = true
    elseif a == "-h" or a == "--help" then
      io.write("usage: luajit examples/nvim_fuzzy.lua [QUERY [ROOT]] [--check]\n")
      os.exit(0)
    elseif a:sub(1, 1) == "-" then
      io.stderr:write("unknown option: ", a, "\n")
      os.exit(2)
    else pos[#pos + 1] = a end
  end
  query, root = pos[1] or query, pos[2] or root
end
query = query:lower():gsub("%s+", "")
if query == "" then
  io.stderr:write("nvim_fuzzy: the query is empty\n")
  if in_nvim then return end
  os.exit(2)
end

---- the job (runs in the workers, and serially for --check) ----

-- The score of `line` for the lowercase query q (nil: no match). Each
-- query letter must appear in order; a letter scores more right after the
-- previous one, at the start of a word or a camelCase hump, and less after
-- a gap. The best of the greedy matches from each place the first letter
-- occurs.
local function fuzzy(line, q, nq)
  local byte = string.byte
  local n = #line
  local first = byte(q, 1)
  local best
  for s = 1, n - nq + 1 do
    local c = byte(line, s)
    if c >= 65 and c <= 90 then c = c + 32 end
    if c == first then
      local score, qi, last = 0, 1, s - 1
      local i = s
      while i <= n and qi <= nq do
        local o = byte(line, i)
        local l = (o >= 65 and o <= 90) and o + 32 or o
        if l == byte(q, qi) then
          score = score + 16
          if i == last + 1 and qi > 1 then score = score + 12
          elseif qi > 1 then score = score - 3 - math.min(i - last - 1, 20) end
          local p = i > 1 and byte(line, i - 1) or 32
          local p_alnum = (p >= 48 and p <= 57) or (p >= 65 and p <= 90) or (p >= 97 and p <= 122)
          if not p_alnum or (o >= 65 and o <= 90 and p >= 97 and p <= 122) then score = score + 10 end
          last = i
          qi = qi + 1
        end
        i = i + 1
      end
      if qi <= nq then break end               -- from here on it can only fail
      if not best or score > best then best = score end
    end
  end
  return best
end

-- a before b in the result: higher score, then shorter line, path, line number.
local function better(a, b)
  if a.score ~= b.score then return a.score > b.score end
  if #a.text ~= #b.text then return #a.text < #b.text end
  if a.path ~= b.path then return a.path < b.path end
  return a.lnum < b.lnum
end

-- Keep the best `top` entries of list (sorted, best first) with e added.
local function keep(list, e, top)
  if #list == top and not better(e, list[top]) then return end
  local i = #list + 1
  list[i] = e
  while i > 1 and better(list[i], list[i - 1]) do
    list[i], list[i - 1] = list[i - 1], list[i]
    i = i - 1
  end
  if #list > top then list[#list] = nil end
end

-- Score every line of `files`; push each file's line count to `progress`
-- (nil: serial); return the best `top` lines and how many lines there were.
local function search(files, q, top, progress)
  local best, nq, total = {}, #q, 0
  for _, path in ipairs(files) do
    local f = io.open(path, "rb")
    local text = f and f:read("*a") or ""
    if f then f:close() end
    local lnum, pos, n = 0, 1, #text
    while pos <= n do
      local e = text:find("\n", pos, true) or n + 1
      lnum = lnum + 1
      if e - pos >= nq then
        local line = text:sub(pos, e - 1)
        local sc = fuzzy(line, q, nq)
        if sc and (#best < top or sc >= best[#best].score) then
          keep(best, { score = sc, path = path, lnum = lnum, text = line }, top)
        end
      end
      pos = e + 1
    end
    total = total + lnum
    if progress then progress:push(lnum) end
  end
  return best, total
end

-- The files under root (or root itself), with their sizes, sorted by
-- path. A worker walks the tree (opendir/readdir through the FFI), so the
-- loop never waits on the disk.
local function list_files(root)
  local ffi = require "ffi"
  pcall(ffi.cdef, [[
    typedef struct nvim_fuzzy_DIR nvim_fuzzy_DIR;
    struct nvim_fuzzy_dirent { uint64_t ino; int64_t off; unsigned short reclen;
                               unsigned char type; char name[256]; };
    nvim_fuzzy_DIR *opendir(const char *name);
    struct nvim_fuzzy_dirent *readdir(nvim_fuzzy_DIR *d);
    int closedir(nvim_fuzzy_DIR *d);
  ]])
  local DT_DIR, DT_REG, DT_UNKNOWN = 4, 8, 0
  local files = {}
  local function add(path)
    local f = io.open(path, "rb")
    if f then
      files[#files + 1] = { path, f:seek("end") or 0 }
      f:close()
    end
  end
  local function walk(dir)
    local d = ffi.C.opendir(dir)
    if d == nil then return false end
    while true do
      local e = ffi.C.readdir(d)
      if e == nil then break end
      local name = ffi.string(e.name)
      if name ~= "." and name ~= ".." then
        local path = dir .. "/" .. name
        if e.type == DT_DIR then walk(path)
        elseif e.type == DT_REG then add(path)
        elseif e.type == DT_UNKNOWN and not walk(path) then add(path) end
      end
    end
    ffi.C.closedir(d)
    return true
  end
  if not walk(root) then add(root) end
  table.sort(files, function(a, b) return a[1] < b[1] end)
  return files
end

-- Split the files into about `n` tasks of similar size.
local function split(files, n)
  local total = 0
  for _, f in ipairs(files) do total = total + f[2] end
  local tasks, cur, sum = {}, {}, 0
  for _, f in ipairs(files) do
    cur[#cur + 1] = f[1]
    sum = sum + f[2]
    if sum >= total / n then tasks[#tasks + 1], cur, sum = cur, {}, 0 end
  end
  if #cur > 0 then tasks[#tasks + 1] = cur end
  return tasks
end

---- on the loop ----

local function say(s)
  if headless then io.stdout:write(s, "\n") io.stdout:flush()
  else vim.schedule(function() vim.api.nvim_echo({ { s } }, false, {}) end) end
end

local delivered = false

-- The editor gets the result: the quickfix list in Neovim, stdout here.
local function deliver(best, stats)
  local lines = {}
  for i, e in ipairs(best) do
    lines[i] = ("%s:%d: %s  [%d]"):format(e.path, e.lnum, e.text:gsub("^%s+", ""):sub(1, 100), e.score)
  end
  local summary = ("fuzzy '%s': %d lines in %d files, %.2f s on %d workers; the loop's 10 ms timer "
    .. "ran %d times meanwhile (worst lag %.1f ms)"):format(query, stats.lines, stats.files,
    stats.seconds, stats.workers, stats.ticks, stats.lag)
  if in_nvim then
    vim.schedule(function()
      local items = {}
      for i, e in ipairs(best) do items[i] = { filename = e.path, lnum = e.lnum, text = e.text } end
      vim.fn.setqflist({}, " ", { title = "fuzzy " .. query, items = items })
      delivered = true
    end)
  else
    delivered = true
  end
  if headless then
    for _, l in ipairs(lines) do io.stdout:write(l, "\n") end
  end
  say(summary)
end

local finished, failed = false, nil
local pool = par.pool()
local t0 = uv.hrtime()
local ticks, lag, last = 0, 0, uv.hrtime()
local timer = uv.new_timer()
timer:start(10, 10, function()
  local now = uv.hrtime()
  lag = math.max(lag, (now - last) / 1e6 - 10)
  last = now
  ticks = ticks + 1
end)

local function finish(err)
  timer:stop()
  timer:close()
  pool:close()
  failed = err
  finished = true
  if err then say("fuzzy: " .. err) end
end

uvpar.submit(pool, list_files, root, function(ok, files)
  if not ok then return finish(tostring(files)) end
  if #files == 0 then return finish("no files under " .. root) end
  local tasks = split(files, 16 * pool:size())
  local progress = par.channel(1024)
  local lines, seen, shown, best, left = 0, 0, uv.hrtime(), {}, #tasks
  -- Progress, a batch at a time (shown at most 5 times a second in an editor).
  uvpar.on_batch(progress, function(counts)
    if not counts then return end
    for _, n in ipairs(counts) do seen = seen + n end
    if not headless and uv.hrtime() - shown > 2e8 then
      shown = uv.hrtime()
      say(("fuzzy '%s': %d lines scored..."):format(query, seen))
    end
  end)
  for _, chunk in ipairs(tasks) do
    uvpar.submit(pool, search, chunk, query, TOP, progress, function(ok, part, n)
      if not ok then return finish(tostring(part)) end
      lines = lines + n
      for _, e in ipairs(part) do keep(best, e, TOP) end
      left = left - 1
      if left > 0 then return end
      progress:close()
      deliver(best, { files = #files, lines = lines, seconds = (uv.hrtime() - t0) / 1e9,
        workers = pool:size(), ticks = ticks, lag = lag })
      if check then
        local paths = {}
        for i, f in ipairs(files) do paths[i] = f[1] end
        local serial = search(paths, query, TOP)
        local same = #serial == #best
        for i = 1, #serial do
          same = same and serial[i].path == best[i].path and serial[i].lnum == best[i].lnum
            and serial[i].score == best[i].score
        end
        say(same and "check: the serial search finds the same lines" or "check: MISMATCH with the serial search")
        if not same then return finish("the parallel and serial results differ") end
      end
      finish()
    end)
  end
end)

if in_nvim then
  if headless then
    vim.wait(600000, function() return finished and (delivered or failed ~= nil) end, 10)
    if failed then vim.cmd("cquit 1") end
  end
else
  uv.run()
  os.exit(failed and 1 or 0)
end
