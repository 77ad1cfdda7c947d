-- ffipar.worker: what a worker state runs for each spawned function. The
-- shim calls run(t, data) with the thread (light userdata) and the payload
-- bytes (a string), or data == nil when the payload names shared objects
-- and must be decoded through the FFI. Values that are plain (no cdata)
-- never load the FFI: the common case stays cheap.
local wire = require "ffipar.wire"

local M = {}

local function pack(...)
  return { n = select("#", ...), ... }
end

local function thread_ptr(t)
  local ffi = require "ffi"
  require("ffipar.lib").declare("thread")
  return ffi.cast("ffipar_thread *", t), require("ffipar.lib").C
end

-- Functions already loaded in this state, by bytecode: a pool worker's
-- state runs many tasks and loads each task function once.
local fncache = { fns = {}, size = 0 }

-- A pool worker's state runs many tasks, each a thread of its own: forget
-- what the modules cached about the previous one (the mutex holder key, the
-- gate's private color). Only modules this state loaded.
local function new_task()
  local loaded = package.loaded
  if loaded["ffipar.mutex"] then loaded["ffipar.mutex"].new_task() end
  if loaded["ffipar.gate"] then loaded["ffipar.gate"].new_task() end
  if loaded["ffipar.check"] then loaded["ffipar.check"].new_task() end
end

local function call(t, data)
  new_task()
  local r
  if data then
    r = wire.decode(data, nil, nil, fncache)
  else
    local tp, C = thread_ptr(t)
    r = require("ffipar.codec").decode(C.ffipar_thread_payload(tp), fncache)
  end
  return pack(r[1](unpack(r, 2, r.n)))
end

-- The error handler: the worker's traceback, added once to a string error
-- (one that already carries one, e.g. rethrown by a parallel loop, is left
-- alone). Any other error value is kept as it is, boxed with the traceback.
local boxed = setmetatable({}, { __mode = "k" })
local function traceback(e)
  if type(e) == "string" then
    if e:find("\nstack traceback:", 1, true) then return e end
    return debug.traceback(e, 2)
  end
  local box = { e, debug.traceback("", 2):sub(2) }
  boxed[box] = true
  return box
end

-- A non-string error value crosses like results: the message { value,
-- traceback } goes to the shim (join returns false, value, traceback), and
-- the text stays the error for whoever reads it as a string. A value that
-- cannot cross is described instead.
local function fail_with_value(t, box)
  local e, tb = box[1], box[2]
  local ok, buf, objs = pcall(wire.encode, "ffipar worker", "error value", 1, 1, e, tb)
  if not ok then
    return false, ("%s (%s)\n%s"):format(tostring(e), tostring(buf), tb)
  end
  local tp, C = thread_ptr(t)
  C.ffipar_thread_succeed(tp, require("ffipar.codec").message(buf, objs, "ffipar worker", 1))
  return false, tostring(e) .. "\n" .. tb
end

-- Returns true, result bytes | true (results already handed to the shim as
-- a message naming shared objects) | false, error with traceback (and for
-- an error value that is not a string, the value handed over as results).
function M.run(t, data)
  local ok, r = xpcall(call, traceback, t, data)
  if not ok then
    if boxed[r] then return fail_with_value(t, r) end
    return false, tostring(r)
  end
  local eok, buf, objs = pcall(wire.encode, "ffipar worker", "result", 1, 1, unpack(r, 1, r.n))
  if not eok then return false, tostring(buf) end
  if #objs == 0 then return true, buf:tostring() end
  local tp, C = thread_ptr(t)
  C.ffipar_thread_succeed(tp, require("ffipar.codec").message(buf, objs, "ffipar worker", 1))
  return true
end

M.pack = pack
return M
