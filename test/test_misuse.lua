-- test/test_misuse.lua: the generated misuse suite. test/api.lua lists every
-- public function and method; test/misuse_child.lua calls each with a wrong
-- self and each argument with every wrong kind of value, in a child process
-- per part (a crash is reported naming the call, and the calls after it
-- still run). Every call must raise an error at the caller's line that
-- starts with the public name (`g:enter:`, `ffipar.channel:`), or return.
local lu = require "luaunit"
local par = require "ffipar"
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

-- Every public name of ffipar and every method of its handles is in
-- test/api.lua (so the suite above covers it).
function TestMisuse.testEveryPublicNameIsListed()
  local listed = {}
  for _, e in ipairs(api.functions) do listed[e[1]] = true end
  local missing = {}
  for name in pairs(par._where) do
    local v = par[name]
    if type(v) == "table" then
      for k, f in pairs(v) do
        if type(f) == "function" and not listed[name .. "." .. k] then
          missing[#missing + 1] = "par." .. name .. "." .. k
        end
      end
    elseif not listed[name] then
      missing[#missing + 1] = "par." .. name
    end
  end
  par.channel(1, "double")       -- makes the typed channel methods
  local modules = {}
  for _, mod in ipairs(par._modules) do
    local m = require("ffipar." .. mod)
    for kind, methods in pairs(m._methods or {}) do modules[kind] = methods end
    if m._typed then   -- every typed channel has the same methods
      modules["typed channel"] = m._typed.double.methods
      modules["struct channel"] = m._typed.double.methods
    end
  end
  for kind, methods in pairs(modules) do
    local entry
    for _, k in ipairs(api.kinds) do if k[1] == kind then entry = k end end
    if not entry then
      missing[#missing + 1] = "the kind " .. kind
    else
      local names = {}
      for _, e in ipairs(entry.methods) do names[e[1]] = true end
      for name, f in pairs(methods) do
        if type(f) == "function" and not names[name] then
          missing[#missing + 1] = entry.var .. ":" .. name
        end
      end
    end
  end
  if has_luv then   -- the uv adapter's functions and its watch's methods
    local uv_listed = {}
    for _, e in ipairs(api.uv) do uv_listed[e[1]] = true end
    local uvm = require "ffipar.uv"
    for k, f in pairs(uvm) do
      if type(f) == "function" and not k:match("^_") and not uv_listed[k] then
        missing[#missing + 1] = "ffipar.uv." .. k
      end
    end
    for kind, methods in pairs(uvm._methods or {}) do modules[kind] = methods end
    for kind, methods in pairs(modules) do
      local entry
      for _, k in ipairs(api.kinds) do if k[1] == kind then entry = k end end
      if kind == "watch" and entry then
        local names = {}
        for _, e in ipairs(entry.methods) do names[e[1]] = true end
        for name, f in pairs(methods) do
          if type(f) == "function" and not name:match("^__") and not names[name] then
            missing[#missing + 1] = "w:" .. name
          end
        end
      end
    end
  end
  table.sort(missing)
  lu.assertEquals(missing, {}, "public names missing from test/api.lua")
  -- and every kind of the list was found in a module
  for _, k in ipairs(api.kinds) do
    if k.needs and not has_luv then break end
    lu.assertNotNil(modules[k[1]], "test/api.lua lists a kind no module has: " .. k[1])
  end
end
