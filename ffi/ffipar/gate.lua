-- ffipar.gate: the color gate. Threads of the same color may be inside a
-- gate together; threads of different colors never are; a colorless thread
-- (color nil) is alone inside. No color starves: once another color waits,
-- the gate closes to new arrivals of the color inside.
--
--   local g = par.gate()
--   g:run("readers", function() ... end)    -- with every "readers" thread
--   par.atomically(function() ... end)      -- alone in the world gate
--
-- Colors: integers in [0, 2^45), strings (the same string is the same color
-- in every worker), or nil (exclusive). Misuse raises at the caller;
-- g:enter returns nil, "timeout" | "cancelled".
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("gate")

local M = {}

local INT_LIMIT = 2 ^ 45
local floor = math.floor

local out = ffi.new("ffipar_gate *[1]")
local statsbuf = ffi.new("int64_t[8]")
local istype = ffi.istype
local gate_p = ffi.typeof("struct ffipar_gate *")

local function bad_self(fname, v)
  lib.bad_self(fname, "gate", "g", v)
end

-- This task's private color (per OS thread in C, forgotten after each
-- task; ffipar.worker calls new_task() before the next in a pool worker).
local private
function M.new_task() private = nil end
-- String colors this state looked up, each holding a reference in the
-- shim's table (a string keeps its color while someone holds it). At most
-- CACHE_MAX: then the colors this thread is not inside any gate with are
-- let go. The last reference goes when the state closes.
local CACHE_MAX = 1024
local strcolors, ncached = {}, 0

local function forget_colors()
  local keep, n = {}, 0
  for s, c in pairs(strcolors) do
    if C.ffipar_gate_holds_color(c) ~= 0 then
      keep[s], n = c, n + 1
    else
      C.ffipar_gate_color_release(s, #s)
    end
  end
  strcolors, ncached = keep, n
end
M._anchor = ffi.gc(ffi.new("char[1]"), function()
  for s in pairs(strcolors) do C.ffipar_gate_color_release(s, #s) end
  strcolors, ncached = {}, 0
end)

local function string_color(s)
  if ncached >= CACHE_MAX then forget_colors() end
  local c = C.ffipar_gate_color(s, #s)
  if c < 0 then error("ffipar.gate: out of memory", 4) end
  strcolors[s], ncached = c, ncached + 1
  return c
end

local function color_error(fname, color)
  local why
  if type(color) ~= "number" then
    why = "must be an integer, a string or nil, got " .. type(color)
  elseif color ~= color or color == math.huge or color == -math.huge or color ~= floor(color) then
    why = "must be an integer, got " .. tostring(color)
  elseif color < 0 then
    why = "must be >= 0, got " .. tostring(color)
  else
    why = ("must be < 2^45, got %.0f"):format(color)
  end
  lib.argerror(fname, "color " .. why, 4)
end

-- Resolve a color argument; slow cases out of line so enter stays small.
local function resolve(color, fname)
  if type(color) == "nil" then
    if not private then private = C.ffipar_gate_private_color() end
    return private
  elseif type(color) == "string" then
    return strcolors[color] or string_color(color)
  end
  color_error(fname, color)
end

local function enter_failed(g, rc, fname)
  if rc == C.FFIPAR_EBUSY then
    lib.argerror(fname, "this thread is already inside the gate with another color "
      .. "(leave it first; waiting would deadlock)", 3)
  elseif rc == C.FFIPAR_EINVAL then
    lib.argerror(fname, "this thread is inside too many gates at once (8)", 3)
  elseif rc == C.FFIPAR_ENOMEM then
    error(fname .. ": out of memory", 3)
  end
  return lib.fail(rc)
end

local gate = {}

--- Enter with color (integer, string or nil = exclusive), waiting up to
-- timeout seconds (nil forever, 0 try once). true | nil, "timeout" |
-- nil, "cancelled". Entering again with the same color nests.
function gate:enter(color, timeout)
  if not istype(gate_p, self) or self == nil then bad_self("g:enter", self) end
  local c = color
  if type(c) ~= "number" or c < 0 or c >= INT_LIMIT or c ~= floor(c) then
    c = resolve(color, "g:enter")
  end
  local t = -1
  if type(timeout) ~= "nil" then t = lib.timeout(timeout, "g:enter") end
  local rc = C.ffipar_gate_enter(self, c, t)
  if rc == 0 then return true end
  local v, err = enter_failed(self, rc, "g:enter")   -- not a tail call: error levels
  return v, err
end

--- Leave one level of nesting. Raises when this thread is not inside.
function gate:leave()
  if not istype(gate_p, self) or self == nil then bad_self("g:leave", self) end
  if C.ffipar_gate_leave(self) ~= 0 then
    lib.argerror("g:leave", "this thread is not inside the gate")
  end
  return true
end

-- Leave, then return fn's results or rethrow its error.
local function finish(g, ok, ...)
  C.ffipar_gate_leave(g)
  if not ok then error((...), 0) end
  return ...
end

--- Run fn(...) inside with color; leaves even when fn raises. Returns fn's
-- results, or nil, "cancelled" when this worker is cancelled while waiting.
function gate:run(color, fn, ...)
  if not istype(gate_p, self) or self == nil then bad_self("g:run", self) end
  if type(fn) ~= "function" then
    lib.argerror("g:run", "argument #2 must be a function, got " .. type(fn))
  end
  local c = color
  if type(c) ~= "number" or c < 0 or c >= INT_LIMIT or c ~= floor(c) then
    c = resolve(color, "g:run")
  end
  local rc = C.ffipar_gate_enter(self, c, -1)
  if rc ~= 0 then
    local v, err = enter_failed(self, rc, "g:run")
    return v, err
  end
  return finish(self, pcall(fn, ...))
end

--- Nesting depth of this thread in the gate (0: not inside).
function gate:depth()
  if not istype(gate_p, self) or self == nil then bad_self("g:depth", self) end
  return C.ffipar_gate_depth(self)
end

--- { entries, waits, switches, inside, waiting, groups, closed }.
function gate:stats()
  if not istype(gate_p, self) or self == nil then bad_self("g:stats", self) end
  C.ffipar_gate_stats(self, statsbuf)
  local s = statsbuf
  return {
    entries = tonumber(s[0]), waits = tonumber(s[1]), switches = tonumber(s[2]),
    inside = tonumber(s[3]), waiting = tonumber(s[4]), groups = tonumber(s[5]),
    closed = s[6] ~= 0,
  }
end

ffi.metatype("struct ffipar_gate", {
  __index = gate,
  __tostring = function(g)
    return "ffipar.gate: " .. tostring(ffi.cast("void *", g))
  end,
})
codec.register_ctype(gate_p, "gate")

local gates = {}   -- named gates already looked up in this state

--- A new gate; par.gate(name) is the process-wide gate of that name (the
-- same gate in every worker, created on first use, never freed).
function M.gate(name)
  local rc
  if type(name) == "nil" then
    rc = C.ffipar_gate_new(out)
  elseif type(name) == "string" then
    if gates[name] then return gates[name] end
    rc = C.ffipar_gate_named(out, name, #name)
  else
    lib.argerror("ffipar.gate", "name must be a string or nil, got " .. type(name))
  end
  if rc ~= 0 then error("ffipar.gate: " .. select(2, lib.fail(rc)), 2) end
  local g = lib.own(out[0])
  if name ~= nil then gates[name] = g end
  return g
end

local world
--- Run fn(...) alone in the world gate, par.gate("world"): exclusive
-- against every section of that gate (any color) in every worker. Nests.
function M.atomically(fn, ...)
  if type(fn) ~= "function" then
    lib.argerror("ffipar.atomically", "argument #1 must be a function, got " .. type(fn))
  end
  world = world or M.gate("world")
  if not private then private = C.ffipar_gate_private_color() end
  local rc = C.ffipar_gate_enter(world, private, -1)
  if rc ~= 0 then
    local v, err = enter_failed(world, rc, "ffipar.atomically")
    return v, err
  end
  return finish(world, pcall(fn, ...))
end

M._methods = { gate = gate }

function M.to_wire(g)
  return g, nil
end

function M.from_wire(obj)
  return lib.adopt(obj, "ffipar_gate *")
end

return M
