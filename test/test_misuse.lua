-- test/test_misuse.lua: the generated misuse suite. test/api.lua lists every
-- public function and method; test/misuse_child.lua calls each with a wrong
-- self and each argument with every wrong kind of value, in a child process
-- per part (a crash is reported naming the call, and the calls after it
-- still run). Every call must raise an error at the caller's line that
-- starts with the public name (`g:enter:`, `ffipar.channel:`), or return.
local lu = require "luaunit"
local util = require "util"
local api = require "api"

TestMisuse = {}

local LIMIT = util.sanitizer and 900 or 300   -- seconds for one child process
local totals = { calls = 0, skipped = 0 }

-- Run the calls of one part; returns the list of failures (strings).
local function run_part(part)
  local failures, first, skipped_lines = {}, 1, {}
  while true do
    local log = os.tmpname()
    os.execute(("timeout -k 5 %d %s test/misuse_child.lua '%s' %d >%s 2>&1")
      :format(LIMIT, util.luajit(), part, first, log))
    local text = util.take_file(log)
    local last_call, done
    for line in text:gmatch("[^\n]+") do
      local n, desc = line:match("^CALL (%d+) (.*)$")
      if n then last_call = { tonumber(n), desc } end
      if line:match("^FAIL ") then failures[#failures + 1] = line end
      if line:match("^SKIP ") then skipped_lines[#skipped_lines + 1] = line end
      local c, s, f = line:match("^DONE (%d+) (%d+) (%d+)$")
      if c then done = { tonumber(c), tonumber(s), tonumber(f) } end
    end
    if done then
      totals.calls = totals.calls + done[1] - (first - 1) - done[2]
      totals.skipped = totals.skipped + done[2]
      break
    end
    if not last_call then
      failures[#failures + 1] = "the child failed before its first call:\n" .. text:sub(-2000)
      break
    end
    failures[#failures + 1] = ("CRASH %d %s (the process died; its last output:\n%s)")
      :format(last_call[1], last_call[2], text:sub(-600))
    first = last_call[1] + 1
  end
  for _, l in ipairs(skipped_lines) do print("  misuse " .. part .. ": " .. l) end
  return failures
end

local function check_part(part)
  local failures = run_part(part)
  if #failures > 0 then
    lu.fail(("%d misuse calls of %s failed:\n%s"):format(#failures, part,
      table.concat(failures, "\n")))
  end
end

local has_luv = pcall(require, "luv")

function TestMisuse.testFunctions() check_part("functions") end
function TestMisuse.testUv()
  if not has_luv then lu.skip("luv is not installed (make test installs lua-luv)") end
  check_part("uv")
end
for _, kind in ipairs(api.kinds) do
  TestMisuse["test_" .. kind[1]:gsub(" ", "_")] = function()
    if kind.needs and not pcall(require, kind.needs) then lu.skip(kind.needs .. " is not installed") end
    check_part(kind[1])
  end
end

-- Runs last (luaunit sorts by name): how many calls the suite made.
function TestMisuse.test_zz_count()
  print(("  misuse suite: %d calls made, %d skipped"):format(totals.calls, totals.skipped))
  lu.assertTrue(totals.calls > 0 or os.getenv("LUAUNIT_PATTERN") ~= nil)
end

-- Every public name of ffipar, of ffipar.uv and every method of their
-- handles is in test/api.lua (so the suite above covers it); checked in a
-- child too (loading every module here would change this state for the
-- tests after this one).
function TestMisuse.testEveryPublicNameIsListed() check_part("names") end
