-- Spawn + join of an empty worker (standard libraries, ffi and ffipar ready)
-- against pthread_create + pthread_join in C.
local par = require "ffipar"

return {
  {
    name = "spawn+join empty worker",
    unit = "us",
    target = "<= 100 us and <= 10x C",
    limit = { abs = 100, ratio = 10 },
    lua = function()
      local n = 300
      local t0 = par.now()
      for _ = 1, n do
        assert(par.spawn(function() end):join())
      end
      return (par.now() - t0) / n * 1e6
    end,
    c = "bench/c/spawn 2000",
  },
}
