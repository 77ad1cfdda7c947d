-- test/test_readme.lua: every ```lua block of README.md runs, each in a child
-- process with a time bound (a deadlocking example fails the suite), and
-- prints what its `print(...) --> expected` comments say. A block that is
-- only a fragment (a synopsis with `...` or `[, optional]`) is marked with
-- `<!-- fragment -->` on the line before it and is reported as skipped.
local lu = require "luaunit"
local util = require "util"

TestReadme = {}

local LIMIT = util.sanitizer and 120 or 30     -- seconds for one block

-- The blocks: { line = first line of code, code = text, fragment = bool }.
local function blocks()
  local out, lines = {}, {}
  for l in io.lines("README.md") do lines[#lines + 1] = l end
  local i = 1
  while i <= #lines do
    if lines[i]:match("^```lua%s*$") then
      local b = { line = i + 1, fragment = (lines[i - 1] or ""):match("<!%-%- fragment %-%->") ~= nil }
      local code = {}
      i = i + 1
      while i <= #lines and not lines[i]:match("^```%s*$") do
        code[#code + 1] = lines[i]
        i = i + 1
      end
      b.code = table.concat(code, "\n") .. "\n"
      out[#out + 1] = b
    end
    i = i + 1
  end
  return out
end

local function squash(s) return (s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- What the block's print calls should print, by the order of the calls:
-- { [k] = expected text or false (not stated) }.
local function expected_prints(code)
  local want = {}
  for l in code:gmatch("[^\n]*") do
    if l:match("^%s*print%(") then
      want[#want + 1] = l:match("%-%->%s*(.-)%s*$") or false
    end
  end
  return want
end

local function run_block(b)
  local src = os.tmpname()
  local f = assert(io.open(src, "w"))
  f:write(b.code)
  f:close()
  local log = os.tmpname()
  local ok = os.execute(("timeout -k 5 %d %s %s >%s 2>&1"):format(LIMIT, util.luajit(), src, log))
  os.remove(src)
  local out = util.take_file(log)
  ok = ok == 0 or ok == true
  lu.assertTrue(ok, ("README.md:%d: the block failed or ran longer than %d s:\n%s")
    :format(b.line, LIMIT, out:sub(-2000)))
  local got = {}
  for l in out:gmatch("[^\n]+") do got[#got + 1] = l end
  for k, want in ipairs(expected_prints(b.code)) do
    if want then
      lu.assertEquals(squash(got[k] or ""), squash(want),
        ("README.md:%d: print #%d"):format(b.line, k))
    end
  end
end

local all = blocks()
for _, b in ipairs(all) do
  TestReadme[("test_line_%04d"):format(b.line)] = function()
    if b.fragment then
      print(("  README.md:%d: a fragment (<!-- fragment -->), not run"):format(b.line))
      lu.skip("README.md:" .. b.line .. " is a fragment")
    end
    run_block(b)
  end
end

-- The extraction itself: the README has runnable blocks, and a block that
-- deadlocks would be caught (this one is run, with a short bound, and must fail).
function TestReadme.testFindsBlocksAndCatchesAHang()
  local runnable = 0
  for _, b in ipairs(all) do if not b.fragment then runnable = runnable + 1 end end
  lu.assertTrue(runnable >= 3, "runnable README blocks: " .. runnable)
  local saved = LIMIT
  LIMIT = 2
  local ok = pcall(run_block, { line = 0, code = 'local par = require "ffipar"\n'
    .. 'local ch = par.channel(1); ch:push(1); ch:push(2)\n' })
  LIMIT = saved
  lu.assertFalse(ok, "a block that blocks for ever passed")
end
