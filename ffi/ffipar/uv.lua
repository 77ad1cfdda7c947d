-- ffipar.uv: ffipar inside a libuv event loop -- luv, or Neovim's vim.loop.
-- Optional: nothing else in ffipar loads it, and it loads luv only when it
-- is given no loop module and finds no vim.loop.
--
--   local uvpar = require "ffipar.uv"             -- vim.loop in Neovim, else require "luv"
--   local uvpar = require("ffipar.uv").new(uv)    -- or the uv module you use
--   uvpar.on_done(f, function(ok, ...) end)       -- f: a pool future or a par.spawn thread
--   uvpar.submit(pool, fn, ..., function(ok, ...) end)
--   uvpar.on_item(ch, function(v, err) end)       -- each value, then (nil, "closed")
--   uvpar.on_batch(ch, function(vs, err) end [, max])
--   local ok, r = uvpar.await(f)                  -- in a coroutine: yields until done
--   local v, err = uvpar.await(ch)                -- ... until a value or "closed"
--
-- A watch polls the object's readiness descriptor (t:fd(), ch:fd()) with a
-- uv poll handle, one per descriptor however many watches share it: the
-- loop sleeps until there is something to take, and callbacks run on the
-- loop's thread. A future's callback runs once, with what f:join()
-- returns; the adapter then closes the future's descriptor (t:close_fd()),
-- so thousands of futures do not wait for the collector to give theirs
-- back. At most max_fds futures (default 256) are polled at once; the
-- others wait their turn, so a program may watch any number of them.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local channel = require "ffipar.channel"
local thread = require "ffipar.thread"

local M = {}

local thread_p = ffi.typeof("struct ffipar_thread *")
local function pack(...) return { n = select("#", ...), ... } end

local function is_thread(x)
  return type(x) == "cdata" and ffi.istype(thread_p, x) and x ~= nil
end

local function describe(x)
  return type(x) == "cdata" and tostring(ffi.typeof(x)) or type(x)
end

-- level: as for lib.argerror, from check_fn's caller (default 2: its caller's caller).
local function check_fn(fname, cb, what, level)
  if type(cb) ~= "function" then
    lib.argerror(fname, ("%s must be a function, got %s"):format(what, type(cb)), (level or 2) + 1)
  end
end

-- A watch: w:stop() ends it (no callback after that), w:active() says
-- whether it still waits.
local watch = {}
watch.__index = watch

local function check_watch(w, fname)
  if getmetatable(w) ~= watch then
    lib.argerror(fname, "expected a watch as self (use w:method()), got " .. lib.show(w), 3)
  end
end

function watch:stop()
  check_watch(self, "w:stop")
  if self.stopped then return end
  self.stopped = true
  if self.leave then self.leave(self) end
end

function watch:active()
  check_watch(self, "w:active")
  return not self.stopped
end

--- An adapter bound to the uv module `uv` (luv's API: new_poll, new_timer).
-- opts.max_fds: futures polled at once (default 256).
function M.new(uv, opts)
  if type(uv) ~= "table" or type(uv.new_poll) ~= "function" then
    lib.argerror("ffipar.uv.new", "argument #1 must be a uv module (luv or vim.loop), got " .. describe(uv))
  end
  if type(opts) ~= "nil" and type(opts) ~= "table" then
    lib.argerror("ffipar.uv.new", "argument #2 (options) must be a table or nil, got " .. describe(opts))
  end
  local max_fds = opts and opts.max_fds or 256
  lib.count(max_fds, "ffipar.uv.new", "max_fds", 1, 2^20, 2)
  local A = { uv = uv }

  -- One poll handle per descriptor (libuv allows one per descriptor and
  -- loop), shared by the watches on it: fd -> { h, obj, subs = { w... } }.
  local polls = {}
  local polled_futures = 0
  local pump

  local function leave(w)
    local e = w.entry
    if not e then return end
    w.entry = nil
    for i = #e.subs, 1, -1 do
      if e.subs[i] == w then table.remove(e.subs, i) end
    end
    if #e.subs > 0 then return end
    polls[e.fd] = nil
    if not e.h:is_closing() then e.h:close() end
    if e.future then
      -- Polling stopped first (uv_close takes the descriptor out of the
      -- backend at once), then the descriptor goes.
      e.obj:close_fd()
      polled_futures = polled_futures - 1
      pump()
    end
  end

  -- Add w to the poll of obj's descriptor; w.ready(w) runs on each
  -- readiness, w.failed(w, err) if polling fails.
  local function join_poll(w, obj, future)
    local fd = obj:fd()
    local e = polls[fd]
    if not e then
      local h, err = uv.new_poll(fd)
      if not h then
        if future then obj:close_fd() end
        error("cannot poll descriptor " .. fd .. ": " .. tostring(err), 0)
      end
      e = { h = h, obj = obj, fd = fd, future = future, subs = {} }
      polls[fd] = e
      if future then polled_futures = polled_futures + 1 end
      h:start("r", function(perr)
        local subs = { unpack(e.subs) }            -- callbacks may leave
        for _, s in ipairs(subs) do
          if not s.stopped then
            if perr then s:stop(); s.failed(s, perr) else s.ready(s) end
          end
        end
      end)
    end
    e.subs[#e.subs + 1] = w
    w.entry = e
    w.leave = leave
  end

  -- Futures beyond max_fds wait here, in order.
  local queue, head, tail = {}, 1, 0

  -- The last callback of a watch runs first and the clean-up after it
  -- (closing the poll handle and a future's descriptor: system calls the
  -- loop need not wait for), also when the callback raises.
  local function deliver(w, ...)
    w.stopped = true
    local ok, err = pcall(w.cb, ...)
    if w.leave then w.leave(w) end
    if not ok then error(err, 0) end
  end

  local function start_future(w)
    local f = w.obj
    w.obj = nil
    if f:status() ~= "running" then
      -- Already done (maybe joined, its readiness consumed): join now
      -- (a misuse raises here, not in the loop), deliver on the loop's
      -- next turn.
      local r = pack(f:join(0))
      local t = uv.new_timer()
      w.leave = function() if not t:is_closing() then t:close() end end
      t:start(0, 0, function() deliver(w, unpack(r, 1, r.n)) end)
      return
    end
    w.ready = function()
      local r = pack(thread.take(f))            -- f:join(0); leave closes the descriptor
      if not (r[1] == nil and r[2] == "timeout") then deliver(w, unpack(r, 1, r.n)) end
    end
    w.failed = function(_, perr) w.cb(false, "ffipar.uv: polling failed: " .. tostring(perr)) end
    join_poll(w, f, true)
  end

  -- Start queued watches while there is room. A watch that cannot start
  -- (no descriptor: e.g. too many open files) raises when it is `mine`,
  -- the one on_done is adding; any other gets cb(false, err) instead, as
  -- this runs inside a loop callback, where an error would end plain luv.
  pump = function(mine)
    while head <= tail and polled_futures < max_fds do
      local w = queue[head]
      queue[head] = nil
      head = head + 1
      if not w.stopped then
        local ok, err = pcall(start_future, w)
        if not ok then
          err = tostring(err):gsub("^[^\n]-:%d+: ", "")
          if w == mine then error(err, 0) end
          w.stopped = true
          w.cb(false, "ffipar.uv: " .. err)
        end
      end
    end
  end

  --- cb(...) on the loop with what f:join() returns (true, results... |
  -- false, err | nil, "cancelled"), once, when the thread or future f ends.
  function A.on_done(f, cb)
    if not is_thread(f) then
      lib.argerror("ffipar.uv.on_done", "argument #1 must be a par.thread or a pool future, got " .. describe(f))
    end
    check_fn("ffipar.uv.on_done", cb, "argument #2 (the callback)")
    local w = setmetatable({ obj = f, cb = cb }, watch)
    w.leave = function(self) self.obj = nil end      -- stopped while queued
    tail = tail + 1
    queue[tail] = w
    local ok, err = pcall(pump, w)
    if not ok then lib.argerror("ffipar.uv.on_done", err) end
    return w
  end

  --- pool:submit(fn, ...) with a callback as the last argument: cb(ok, ...)
  -- runs on the loop with the task's results. Returns the future and the watch.
  function A.submit(pool, fn, ...)
    if not require("ffipar.pool").is_pool(pool) then
      lib.argerror("ffipar.uv.submit", "argument #1 must be a par.pool, got " .. describe(pool))
    end
    check_fn("ffipar.uv.submit", fn, "argument #2")
    local n = select("#", ...)
    local cb = n > 0 and select(n, ...) or nil
    check_fn("ffipar.uv.submit", cb, "the last argument (the callback)")
    local args = pack(...)
    local ok, f = pcall(pool.submit, pool, fn, unpack(args, 1, n - 1))
    if not ok then
      error("ffipar.uv.submit: " .. (tostring(f):gsub("^[^\n]-:%d+: ", "")), 2)
    end
    return f, A.on_done(f, cb)
  end

  -- Values per wake-up before the loop gets a turn: the descriptor stays
  -- readable, so the rest come on the next iteration.
  local PER_WAKE = 1024

  -- Watch channel ch: ready(w) pops what is there and calls back.
  local function watch_channel(fname, ch, cb, ready)
    if not channel.is_channel(ch) then
      lib.argerror(fname, "argument #1 must be a par.channel, got " .. describe(ch), 3)
    end
    check_fn(fname, cb, "argument #2 (the callback)", 3)
    local w = setmetatable({ cb = cb, ready = ready }, watch)
    w.failed = function(_, perr) cb(nil, "ffipar.uv: polling failed: " .. tostring(perr)) end
    local ok, err = pcall(join_poll, w, ch, false)
    if not ok then lib.argerror(fname, err, 3) end
    return w
  end

  --- cb(v) on the loop for each value popped from ch, in order; then
  -- cb(nil, "closed") once ch is closed and drained, and the watch ends.
  function A.on_item(ch, cb)
    local w = watch_channel("ffipar.uv.on_item", ch, cb, function(w)
      for _ = 1, PER_WAKE do
        local v, err = ch:pop(0)
        if v == nil then
          if err ~= "timeout" then deliver(w, nil, err) end
          return
        end
        cb(v)
        if w.stopped then return end
      end
    end)
    return w   -- not a tail call: watch_channel raises at the caller of this function
  end

  --- cb(vs) on the loop with a list of the values queued at each wake-up
  -- (up to max, default 256, per call), in order; then cb(nil, "closed").
  function A.on_batch(ch, cb, max)
    if type(max) == "nil" then max = 256 end
    lib.count(max, "ffipar.uv.on_batch", "max", 1, 2^24, 2)
    local w = watch_channel("ffipar.uv.on_batch", ch, cb, function(w)
      for _ = 1, math.max(1, math.floor(PER_WAKE / max)) do
        local vs, n, err = {}, 0, nil
        while n < max do
          local v, e = ch:pop(0)
          if v == nil then err = e break end
          n = n + 1
          vs[n] = v
        end
        if n > 0 then cb(vs) end
        if w.stopped then return end
        if err then
          if err ~= "timeout" then deliver(w, nil, err) end
          return
        end
      end
    end)
    return w   -- not a tail call: watch_channel raises at the caller of this function
  end

  --- In a coroutine: yield until the thread or future f ends and return
  -- what f:join() returns, or until channel ch has a value (v | nil,
  -- "closed"). Returns at once, with no descriptor, when it already can.
  function A.await(x)
    local now
    if is_thread(x) then
      now = pack(x:join(0))
    elseif channel.is_channel(x) then
      now = pack(x:pop(0))
    else
      lib.argerror("ffipar.uv.await", "argument #1 must be a par.thread, pool future or channel, got "
        .. describe(x))
    end
    if not (now[1] == nil and now[2] == "timeout") then return unpack(now, 1, now.n) end
    local co = coroutine.running()
    if co == nil or select(2, coroutine.running()) == true then
      lib.argerror("ffipar.uv.await", "must run inside a coroutine (outside one, use on_done or on_item)")
    end
    local function resume(...)
      local ok, err = coroutine.resume(co, ...)
      if not ok then error(debug.traceback(co, tostring(err)), 0) end
    end
    if is_thread(x) then
      A.on_done(x, resume)
    else
      watch_channel("ffipar.uv.await", x, resume, function(w)
        local v, err = x:pop(0)
        if not (v == nil and err == "timeout") then deliver(w, v, err) end
      end)
    end
    return coroutine.yield()
  end

  return A
end

-- The module itself is an adapter on the default loop: vim.loop inside
-- Neovim, else luv (loaded on first use).
local default
local function get_default()
  if not default then
    local vim = rawget(_G, "vim")
    default = M.new(vim and vim.loop or require("luv"))
  end
  return default
end

M._methods = { watch = watch }

for _, name in ipairs({ "on_done", "submit", "on_item", "on_batch", "await" }) do
  M[name] = function(...) return get_default()[name](...) end
end

return M
