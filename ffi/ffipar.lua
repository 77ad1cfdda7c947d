-- ffipar: every core for a LuaJIT program.
--
--   local par = require "ffipar"
--   local a = par.array("double", 1000)                 -- shared, same address everywhere
--   local t = par.spawn(function(a) a[0] = 42 end, a)   -- a worker with its own state
--   assert(t:join(5)); print(a[0])
--
-- Misuse raises an error at the caller's line; an expected non-success
-- returns nil, "timeout" | "closed" | "cancelled". See README.md.
--
-- The module loads each concept (ffipar/<concept>.lua) on first use, so a
-- worker state pays only for what it touches.

local M = { _VERSION = "ffipar 0.1.0" }

local where = {
  spawn = "thread", cpus = "thread", cancelled = "thread", id = "thread",
  sleep = "thread", now = "thread",
  cdef = "shm", array = "shm", new = "shm", phase = "shm",
  check = "check",
  mutex = "mutex", cond = "cond", barrier = "barrier", semaphore = "semaphore",
  atomic = "atomic", atomics = "atomic",
  gate = "gate", atomically = "gate",
  channel = "channel", select = "channel",
  pool = "pool",
  share = "share",
}

-- Public name -> module, for test/test_misuse.lua (every name must be in test/api.lua).
M._where = where

-- The concept modules, for the worker module cache.
M._modules = {}
do
  local seen = {}
  for _, mod in pairs(where) do
    if not seen[mod] then seen[mod] = true; M._modules[#M._modules + 1] = mod end
  end
  table.sort(M._modules)
end

setmetatable(M, {
  __index = function(t, k)
    local mod = where[k]
    if mod == nil then return nil end
    local v = require("ffipar." .. mod)[k]
    rawset(t, k, v)
    return v
  end,
})

require "ffipar.lib"        -- fail early and clearly if the shim is missing
return M
