-- ffipar.worker: the first Lua code a worker state runs. It decodes the
-- function and arguments, calls them under xpcall (so errors carry the
-- worker's traceback) and hands results or the error back to the shim.
local ffi = require "ffi"
local lib = require "ffipar.lib"
local codec = require "ffipar.codec"
local C = lib.C
lib.declare("thread")

local M = {}

local function run(r)
  return r[1](unpack(r, 2, r.n))
end

local function pack(...)
  return { n = select("#", ...), ... }
end

local function call(t)
  local r = codec.decode(C.ffipar_thread_payload(t))
  return pack(run(r))
end

local function report(t, ok, r)
  if ok then
    local eok, msg = pcall(codec.encode, "ffipar worker", "result", 1, 1, unpack(r, 1, r.n))
    if eok then
      C.ffipar_thread_succeed(t, msg)
      return
    end
    r = msg
  end
  r = tostring(r)
  C.ffipar_thread_fail(t, r, #r)
end

function M.main(t)
  t = ffi.cast("ffipar_thread *", t)
  local ok, r = xpcall(call, debug.traceback, t)
  report(t, ok, r)
end

M.pack = pack
M.report = report
return M
