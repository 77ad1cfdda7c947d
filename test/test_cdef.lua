-- The FFI declaration is the C header, and the shim exports only ffipar_*.
local lu = require "luaunit"
local gencdef = require "gencdef"

TestCdef = {}

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

function TestCdef:testCdefMatchesHeader()
  lu.assertEquals(read("ffi/ffipar/cdef.lua"), gencdef.generate(read("csrc/ffipar.h")))
end

function TestCdef:testEverySectionParses()
  for name in pairs(require "ffipar.cdef") do
    if name ~= "_needs" then require("ffipar.lib").declare(name) end
  end
end

function TestCdef:testExportsOnlyFfiparSymbols()
  local p = io.popen("nm -D --defined-only " .. (os.getenv("FFIPAR_LIB") or "ffi/libffipar.so"))
  local n = 0
  for line in p:lines() do
    local kind, sym = line:match("^%x+ (%a) (%S+)$")
    if kind == "T" or kind == "D" or kind == "B" then
      n = n + 1
      lu.assertStrMatches(sym, "ffipar_.*")
    end
  end
  p:close()
  lu.assertTrue(n > 10)
end
