-- test/uv_scenario.lua: what the event-loop tests run, the same under plain
-- luv (test_uv.lua) and inside headless Neovim (nvim_uv.lua, through
-- proc_uv_nvim.sh). Each scenario runs the loop with wait(cond, seconds)
-- (true once cond() holds, false at the bound) and returns what it saw;
-- the callers assert. Callbacks only record: an error raised in a luv
-- callback ends the process.
local par = require "ffipar"
local M = {}

-- CPU work for about `seconds` in a worker (not a sleep): returns seed and
-- a checksum.
function M.compute(seconds, seed)
  local p = require "ffipar"
  local t_end = p.now() + seconds
  local x = seed
  repeat
    for _ = 1, 20000 do x = (x * 1103515245 + 12345) % 2147483648 end
  until p.now() >= t_end or p.cancelled()
  return seed, x
end

-- A 10 ms repeating timer that records its ticks and its worst lag (ms
-- later than due).
local function ticker(uv)
  local t = { ticks = 0, max_lag = 0, timer = uv.new_timer() }
  local last = uv.hrtime()
  t.timer:start(10, 10, function()
    local now = uv.hrtime()
    local lag = (now - last) / 1e6 - 10
    if lag > t.max_lag then t.max_lag = lag end
    last = now
    t.ticks = t.ticks + 1
  end)
  function t.stop() t.timer:stop(); t.timer:close() end
  return t
end

-- Two tasks compute for `seconds` on a 2-worker pool (both cores) while a
-- worker pushes `items` values into a channel over the same time; the loop
-- runs a 10 ms timer meanwhile. Returns { ticks_before, ticks, max_lag,
-- done = { {ok, seed, x}... }, items = {...}, closed = n, after = calls
-- that came after everything was in }.
function M.responsive(uvpar, uv, wait, seconds, items)
  local pool = par.pool(2)
  local ch = par.channel(8)
  local r = { done = {}, items = {}, closed = 0, after = 0, finished = false }
  local tick = ticker(uv)
  for k = 1, 2 do
    uvpar.submit(pool, M.compute, seconds, k, function(ok, seed, x)
      if r.finished then r.after = r.after + 1; r.late = ("result %s %s"):format(tostring(ok), tostring(seed)) end
      r.done[#r.done + 1] = { ok, seed, x }
      if #r.done == 1 then r.ticks_before = tick.ticks end
    end)
  end
  local producer = par.spawn(function(ch, n, seconds)
    local p = require "ffipar"
    for i = 1, n do
      assert(ch:push(i, 10))
      p.sleep(seconds / n)
    end
    ch:close()
  end, ch, items, seconds)
  uvpar.on_item(ch, function(v, err)
    if r.finished then r.after = r.after + 1; r.late = ("item %s %s"):format(tostring(v), tostring(err)) end
    if v ~= nil then r.items[#r.items + 1] = v
    elseif err == "closed" then r.closed = r.closed + 1
    else r.items[#r.items + 1] = "error: " .. tostring(err) end
  end)
  r.completed = wait(function() return #r.done == 2 and r.closed == 1 end, 60)
  r.finished = true
  wait(function() return false end, 0.05)      -- nothing more may come
  tick.stop()
  r.ticks, r.max_lag = tick.ticks, tick.max_lag
  r.producer = { producer:join(10) }
  pool:close()
  return r
end

-- Coroutines awaiting futures and a channel. Returns the log of what each
-- await returned, in the order they returned.
function M.awaits(uvpar, wait)
  local pool = par.pool(2)
  local ch = par.channel(4)
  local log = {}
  local co = coroutine.wrap(function()
    local f = pool:submit(function(a, b) require("ffipar").sleep(0.05) return a + b end, 2, 3)
    log[#log + 1] = { "sum", uvpar.await(f) }
    log[#log + 1] = { "again", uvpar.await(f) }     -- done already: at once
    local g = pool:submit(function() error("task failed") end)
    log[#log + 1] = { "error", uvpar.await(g) }
    for _ = 1, 3 do log[#log + 1] = { "item", uvpar.await(ch) } end
    log[#log + 1] = { "end" }
  end)
  co()
  local feeder = par.spawn(function(ch)
    local p = require "ffipar"
    p.sleep(0.1)
    ch:push("a")
    p.sleep(0.05)
    ch:push("b")
    ch:close()
  end, ch)
  local completed = wait(function() return log[#log] and log[#log][1] == "end" end, 30)
  assert(feeder:join(10))
  pool:close()
  return log, completed
end

-- n futures, each awaited in its own coroutine (all at once: more than the
-- adapter polls at a time). Returns how many awaits returned the right
-- value, and whether the loop got there within the bound.
function M.many(uvpar, wait, n)
  local pool = par.pool(2)
  local right, returned = 0, 0
  for i = 1, n do
    coroutine.wrap(function()
      local ok, v = uvpar.await(pool:submit(function(i) return i * 2 end, i))
      returned = returned + 1
      if ok and v == i * 2 then right = right + 1 end
    end)()
  end
  local completed = wait(function() return returned == n end, 120)
  pool:close()
  return right, returned, completed
end

return M
