-- Inside an event loop (ffipar.uv on plain luv): how soon the loop hears
-- that a task ended, beside a plain blocking join, both against the floor
-- on this machine (bench/c/eventfd_wake: one eventfd write waking a thread
-- asleep in poll(), plain C, from a long-lived thread as a pool worker is:
-- on this VM that wake takes 41-47 us where a new thread's takes 7-11);
-- and how late a 10 ms loop timer fires while both cores compute.
local par = require "ffipar"
local uv = require "luv"
local uvpar = require("ffipar.uv").new(uv)
local loop_lag = require "loop_lag"

local TASKS = 200

-- The task: 2 ms of computing (so the loop is asleep in epoll when it
-- ends, as a loop waiting for work is), then the time it ends.
local function task()
  local p = require "ffipar"
  local t_end, x = p.now() + 0.002, 1
  repeat x = (x * 1103515245 + 12345) % 2147483648 until p.now() >= t_end
  return p.now(), x
end

-- The same, ending after a 2 ms sleep: the worker's first instructions
-- after a wake-up run on cold caches (the results' encoding, ~1.5 us warm,
-- took ~11 us on this machine).
local function sleepy_task()
  local p = require "ffipar"
  p.sleep(0.002)
  return p.now()
end


local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

-- Run the loop until cond() (a 1 s guard timer bounds each turn).
local function wait(cond)
  local guard = uv.new_timer()
  guard:start(1000, 1000, function() end)
  local deadline = uv.hrtime() + 60e9
  while not cond() and uv.hrtime() < deadline do uv.run("once") end
  guard:stop()
  guard:close()
  uv.run("nowait")
  assert(cond(), "bench_uv: the loop did not get there in 60 s")
end

local function callback_latency(fn)
  local pool = par.pool(1)
  local lat = {}
  for i = 1, TASKS do
    local got
    uvpar.submit(pool, fn, function(ok, t_end) got = par.now() - t_end end)
    wait(function() return got end)
    lat[i] = got * 1e6
  end
  pool:close()
  return median(lat)
end

return {
  {
    -- The median over TASKS tasks, one at a time, of (callback time - the
    -- task's last statement): encoding the results, the end of the task,
    -- the eventfd write, the loop's wake-up from epoll, join(0), decoding.
    name = "loop: task end to callback (ffipar.uv, luv)",
    unit = "us",
    target = "< 50 us median; C: eventfd wake",
    limit = { abs = 50 },
    c = "bench/c/eventfd_wake 200 pool",
    lua = function() return callback_latency(task) end,
  },
  {
    name = "loop: same, a task that sleeps until its end",
    unit = "us",
    target = "(for comparison); C: the same sleep",
    c = "bench/c/eventfd_wake 200 sleep",
    lua = function() return callback_latency(sleepy_task) end,
  },
  {
    -- The same tasks joined the plain way: f:join() blocks (spins 100 us,
    -- then sleeps on a futex), from the task's last statement to join's return.
    name = "loop: task end to blocking join's return",
    unit = "us",
    target = "(for comparison); C: eventfd wake",
    c = "bench/c/eventfd_wake 200 pool",
    lua = function()
      local pool = par.pool(1)
      local lat = {}
      for i = 1, TASKS do
        local _, t_end = pool:submit(task):join()
        lat[i] = (par.now() - t_end) * 1e6
      end
      pool:close()
      return median(lat)
    end,
  },
  {
    -- bench/loop_lag.lua: two tasks compute for 1 s on a 2-worker pool
    -- (both cores) while the loop runs a 10 ms timer: the worst lateness
    -- of a tick, ms.
    name = "loop: 10 ms timer worst lag, both cores busy",
    unit = "ms",
    target = "< 20 ms",
    limit = { abs = 20 },
    runs = 5,
    lua = function()
      local lag = loop_lag(uv, uvpar, wait)
      uv.run("nowait")
      return lag
    end,
  },
  {
    name = "loop: same inside headless Neovim (vim.loop)",
    unit = "ms",
    target = "< 20 ms",
    limit = { abs = 20 },
    runs = 5,
    lua = function()
      local p = io.popen("LUA_PATH='" .. package.path .. "' nvim --headless -u NONE -i NONE -n "
        .. "-c 'luafile bench/nvim_lag.lua' -c 'qa!' 2>&1")
      local out = p:read("*a")
      p:close()
      return assert(tonumber(out:match("lag ([%d.]+)")), "nvim_lag: " .. out)
    end,
  },
}
