-- test/nvim_uv.lua: the event-loop scenarios of test/uv_scenario.lua inside
-- headless Neovim, on vim.loop, the loop run by vim.wait. Run by
-- test/proc_uv_nvim.sh; exits 0 when every check holds, 1 otherwise (each
-- check prints a line).
local failures = 0
local function check(ok, what)
  io.stdout:write((ok and "ok    " or "FAIL  ") .. what .. "\n")
  if not ok then failures = failures + 1 end
end

local ok, err = pcall(function()
  local par = require "ffipar"
  local uvpar = require "ffipar.uv"                  -- picks vim.loop
  local scenario = require "uv_scenario"
  local util = require "util"
  local uv = vim.loop
  local function wait(cond, seconds) return vim.wait(seconds * 1000, cond, 5) end
  local function settled()
    jit.flush()
    vim.wait(20)
    return util.settled_live(), util.eventfds()
  end
  local live, fds = settled()

  local r = scenario.responsive(uvpar, uv, wait, 1.0, 50)
  check(r.completed, "results and items arrived within the bound")
  check((r.ticks_before or 0) >= 10, "the 10 ms timer fired " .. tostring(r.ticks_before)
    .. " times before the first result (" .. r.ticks .. " in all, worst lag "
    .. ("%.1f"):format(r.max_lag) .. " ms)")
  table.sort(r.done, function(a, b) return a[2] < b[2] end)
  check(#r.done == 2 and r.done[1][1] == true and r.done[1][2] == 1 and r.done[2][1] == true
    and r.done[2][2] == 2, "each result once, through the callback")
  local inorder = #r.items == 50
  for i = 1, 50 do inorder = inorder and r.items[i] == i end
  check(inorder, "channel values 1..50 once each, in order (got " .. #r.items .. ")")
  check(r.closed == 1 and r.after == 0, "closed reported once, nothing after")
  check(r.producer[1] == true, "the producer worker ended well")

  local log, completed = scenario.awaits(uvpar, wait)
  check(completed, "awaits completed")
  check(log[1] and log[1][2] == true and log[1][3] == 5, "await(f) returned the task's results")
  check(log[3] and log[3][2] == false and tostring(log[3][3]):find("task failed", 1, true) ~= nil,
    "await(f) returned the task's error")
  check(log[4] and log[4][2] == "a" and log[5][2] == "b" and log[6][2] == nil and log[6][3] == "closed",
    "await(ch) returned a, b, then closed")

  local n = 10000
  live, fds = settled()                              -- the awaits' channel is collected
  local right, returned, done = scenario.many(uvpar, wait, n)
  check(done and right == n and returned == n, ("%d futures awaited, %d right"):format(returned, right))
  check(util.eventfds() == fds, "no descriptor left open (closed as delivered)")
  local live2, fds2 = settled()
  check(live2 == live and fds2 == fds, ("objects alive %d (was %d), eventfds %d (was %d)"):format(live2, live, fds2, fds))
end)
if not ok then check(false, "error: " .. tostring(err)) end
io.stdout:write(("%d failed\n"):format(failures))
io.stdout:flush()
os.exit(failures == 0 and 0 or 1)
