-- test/api.lua: ffipar's public API, one line per constructor, function and
-- method: the list the README documents. test/test_misuse.lua calls every
-- entry with a wrong self and each argument with every wrong kind of value,
-- and FAILS when a module or a handle has a public name that is not here.
--
-- TO ADD A PUBLIC FUNCTION OR METHOD, add one line to its list below:
--   { "name", "argtype", "argtype", ... }       -- arguments in order, self excluded
-- An entry may have `before = function(obj) ... end`: what a valid call needs first
-- (m:unlock needs the mutex locked). The suite also makes each call with valid
-- arguments, which must not raise (so a refusal is for the wrong value).
-- A new kind of handle also needs a `make` (one ready-to-use object whose valid
-- calls never block for long) and a `var` (the name in its messages: "g:enter:");
-- optional: `closed` (a closed/detached one), `reset(obj)` (undo what a call left,
-- e.g. leave a gate), `needs` (a module it needs: skipped, visibly, without it). Kinds with the same var (the two channels) are one family.
-- Argument types (test/misuse_child.lua defines each: a valid sample, what it
-- accepts, which accepted values would wait or run for ever):
--   "any"         anything may be fine: only "no crash, error at the caller named" is checked
--   "..."         varargs (not fuzzed)
--   "function"    a function (sample: an empty one)
--   "timeout?"    seconds >= 0 or nil (the sample objects never make the call wait)
--   "wait?"       seconds >= 0 or nil, and the call waits that long (cv:wait)
--   "seconds"     seconds >= 0, and the call waits that long (par.sleep)
--   "color?"      integer in [0, 2^45), string or nil
--   "int" / "int?"  an integer in int64 range (number or int64/uint64 cdata) / or nil
--   "number"      any number
--   "count0" / "count1"   an integer >= 0 / >= 1 (a count of items)
--   "steps"       an integer >= 0, the number of loop steps a call runs (pool:parallel_for)
--   "cap"         channel capacity, integer in [1, 2^24]
--   "workers"     pool size, integer in [1, 1024] or nil
--   "barrier_n"   integer in [1, 65535]
--   "units?"      semaphore count, integer in [0, 2^31 - 1] or nil
--   "release?"    integer in [1, 2^31 - 1] or nil
--   "string?"     a string or nil
--   "opts?"       a table or nil
--   "bool?"       a boolean or nil
--   "ctype" / "ctype?"  a type name or a named ctype (string / ctype cdata)
--   "cdecl"       C declarations (string)
--   "value"       a value that crosses (not nil)
--   "item"        an item of the typed channel (a double)
--   "darray"      an array of doubles (cdata array or par.array)
--   "rec" / "rec_into?" / "recarray"   a misuse_rec_t (or a table) / one to pop into / an array of them
--   "lo?"         an index >= 0 or nil (into the sample darray of 8 with n = 2)
--   "held_mutex"  a par.mutex held by this thread
--   "channels"    a list of channels
--   "aptr"        an int32_t*, int64_t* or double* into shared memory
--   "table"       a table (of values that cross)
--   "source"      a table or a par.share snapshot (pool:best)
--   "uvmod" / "future" / "pool" / "channel"   the luv module / a finished par.thread / a
--                 par.pool / a par.channel (every wrong value is refused)
--   "max?"        an integer in [1, 2^24] or nil
--   "awaitable"   a thread, future or channel (await: refused outside a coroutine anyway)
local M = {}

-- par.NAME(...): errors start with "ffipar.NAME:".
M.functions = {
  { "spawn", "function", "..." },
  { "cpus" },
  { "cancelled" },
  { "id" },
  { "sleep", "seconds" },
  { "now" },
  { "cdef", "cdecl" },
  { "array", "ctype", "count0", "opts?" },
  { "new", "ctype", "any" },
  { "phase", "function", "..." },
  { "check", "bool?" },
  { "mutex" },
  { "cond" },
  { "barrier", "barrier_n" },
  { "semaphore", "units?" },
  { "atomic", "int?" },
  { "atomics.load", "aptr" },
  { "atomics.store", "aptr", "number" },
  { "atomics.add", "aptr", "number" },
  { "atomics.exchange", "aptr", "number" },
  { "atomics.cas", "aptr", "number", "number" },
  { "gate", "string?" },
  { "atomically", "function", "..." },
  { "channel", "cap", "ctype?" },
  { "select", "channels", "timeout?" },
  { "pool", "workers", "opts?" },
  { "share", "table", "opts?" },
}

-- require("ffipar.uv").NAME(...), the event-loop adapter (on luv here):
-- errors start with "ffipar.uv.NAME:". `control = false`: no valid call outside
-- a coroutine.
M.uv = {
  { "new", "uvmod", "opts?" },
  { "on_done", "future", "function" },
  { "submit", "pool", "function", "function" },      -- the callback comes last
  { "on_item", "channel", "function" },
  { "on_batch", "channel", "function", "max?" },
  { "await", "awaitable", control = false },
}

-- Handles: obj:NAME(...) raises "VAR:NAME: ...". `make(par)` returns a
-- fresh object; `closed(par)` (optional) one that is closed or detached.
M.kinds = {
  { "gate", var = "g", make = function(par) return par.gate() end,
    reset = function(g) while g:depth() > 0 do g:leave() end end,
    methods = {
      { "enter", "color?", "timeout?" },
      { "leave", before = function(g) g:enter("c") end },
      { "run", "color?", "function", "..." },
      { "depth" },
      { "stats" },
    } },
  { "thread", var = "t",
    make = function(par)
      local t = par.spawn(function() return 1 end)
      assert(t:join(10))
      return t
    end,
    closed = function(par)
      local t = par.spawn(function() return 1 end)
      t:detach()
      return t
    end,
    methods = {
      { "join", "timeout?" },
      { "status" },
      { "cancel" },
      { "detach" },
      { "id" },
      { "fd" },
      { "close_fd" },
    } },
  { "mutex", var = "m", make = function(par) return par.mutex() end,
    methods = {
      { "lock", "timeout?" },
      { "trylock" },
      { "unlock", before = function(m) m:lock() end },
      { "with", "function", "..." },
    } },
  { "cond", var = "cv", make = function(par) return par.cond() end,
    methods = {
      { "wait", "held_mutex", "wait?" },
      { "signal" },
      { "broadcast" },
    } },
  { "barrier", var = "b", make = function(par) return par.barrier(1) end,
    methods = {
      { "wait", "timeout?" },
      { "count" },
    } },
  { "semaphore", var = "s", make = function(par) return par.semaphore(4) end,
    methods = {
      { "acquire", "timeout?" },
      { "release", "release?" },
      { "count" },
    } },
  { "atomic", var = "n", make = function(par) return par.atomic(5) end,
    methods = {
      { "load" },
      { "load64" },
      { "store", "int" },
      { "add", "int" },
      { "sub", "int" },
      { "exchange", "int" },
      { "cas", "int", "int" },
    } },
  { "array", var = "a", make = function(par) return par.array("double", 8) end,
    methods = {
      { "ptr" },
    } },
  -- an untyped channel holding 4 values, so that pops do not wait
  { "channel", var = "ch",
    make = function(par)
      local ch = par.channel(8)
      for i = 1, 4 do ch:push(i) end
      return ch
    end,
    closed = function(par)
      local ch = par.channel(8)
      ch:close()
      return ch
    end,
    methods = {
      { "push", "value", "timeout?" },
      { "pop", "timeout?" },
      { "close" },
      { "closed" },
      { "cap" },
      { "iter" },
      { "fd" },
      { "close_fd" },
    } },
  -- a typed channel of doubles holding 4 items
  { "typed channel", var = "ch",
    make = function(par)
      local ch = par.channel(8, "double")
      for i = 1, 4 do ch:push(i) end
      return ch
    end,
    closed = function(par)
      local ch = par.channel(8, "double")
      ch:close()
      return ch
    end,
    methods = {
      { "push", "item", "timeout?" },
      { "pop", "timeout?", "any" },
      { "push_many", "darray", "count1", "timeout?", "lo?" },
      { "pop_many", "darray", "count1", "timeout?", "lo?" },
      { "close" },
      { "closed" },
      { "cap" },
      { "iter" },
      { "fd" },
      { "close_fd" },
    } },
  -- a typed channel of structs (misuse_rec_t, declared by the suite) holding 4 items
  { "struct channel", var = "ch",
    make = function(par)
      local ch = par.channel(8, "misuse_rec_t")
      for i = 1, 4 do ch:push({ i, i }) end
      return ch
    end,
    methods = {
      { "push", "rec", "timeout?" },
      { "pop", "timeout?", "rec_into?" },
      { "push_many", "recarray", "count1", "timeout?", "lo?" },
      { "pop_many", "recarray", "count1", "timeout?", "lo?" },
      { "close" },
      { "closed" },
      { "cap" },
      { "iter" },
      { "fd" },
      { "close_fd" },
    } },
  -- a watch of the uv adapter (ffipar.uv.on_item & co.)
  { "watch", var = "w", needs = "luv",
    make = function(par)
      return require("ffipar.uv").on_item(par.channel(2), function() end)
    end,
    methods = {
      { "stop" },
      { "active" },
    } },
  { "pool", var = "pool", make = function(par) return par.pool(1) end,
    closed = function(par)
      local p = par.pool(1)
      p:close()
      return p
    end,
    methods = {
      { "submit", "function", "..." },
      { "parallel_for", "steps", "function", "..." },
      { "argmax", "steps", "function", "..." },
      { "map_reduce", "steps", "function", "function", "..." },
      { "best", "source", "function", "..." },
      { "size" },
      { "close" },
    } },
  { "share", var = "sh", make = function(par) return par.share({ a = 1, b = { 2 } }) end,
    methods = {
      { "get" },
      { "decodes" },
    } },
}

return M
