-- Generates ffi/ffipar/cdef.lua from csrc/ffipar.h: one Lua string per
-- "/* @section NAME */" of the header, so each module declares only its own.
-- "/* @section NAME needs A B */" records that NAME uses types of A and B
-- (in cdef._needs), which ffipar.lib declares first.
-- Usage: luajit tools/gencdef.lua csrc/ffipar.h > ffi/ffipar/cdef.lua
-- As a module (test_cdef): require("gencdef").generate(header_text).
local M = {}

function M.generate(text)
  local out, name, lines = { "-- Generated from csrc/ffipar.h by make. Do not edit.", "return {" }, nil, {}
  local needs = {}
  local function flush()
    if name then
      out[#out + 1] = ("[%q] = [=[\n%s\n]=],"):format(name, table.concat(lines, "\n"))
    end
    lines = {}
  end
  for line in (text .. "\n"):gmatch("(.-)\n") do
    local sec, deps = line:match("^/%* @section (%w+)(.-) %*/$")
    if sec then
      flush()
      name = sec
      local list = {}
      for dep in deps:gmatch("%w+") do
        if dep ~= "needs" then list[#list + 1] = ("%q"):format(dep) end
      end
      if #list > 0 then needs[#needs + 1] = ("[%q] = { %s },"):format(sec, table.concat(list, ", ")) end
    elseif name and not line:match("^#pragma") then
      lines[#lines + 1] = line
    end
  end
  flush()
  out[#out + 1] = "_needs = {"
  for _, n in ipairs(needs) do out[#out + 1] = "  " .. n end
  out[#out + 1] = "},"
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n"
end

if arg and arg[0] and arg[0]:match("gencdef%.lua$") then
  local f = assert(io.open(assert(arg[1], "usage: gencdef.lua header"), "rb"))
  io.write(M.generate(f:read("*a")))
  f:close()
end
return M
