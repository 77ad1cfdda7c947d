-- test/jitcheck.lua: run a function with jit.v logging to a file and say
-- whether the loops in it compiled (for the sync tests' hot paths).
local M = {}

-- Run fn() with the JIT log on; returns the log text.
function M.log(fn)
  local path = os.tmpname()
  jit.flush()
  local v = require "jit.v"
  v.on(path)
  local ok, err = pcall(fn)
  v.off()
  local f = assert(io.open(path, "rb"))
  local text = f:read("*a")
  f:close()
  os.remove(path)
  assert(ok, err)
  return text
end

-- Nil when `text` shows a looping trace starting at file:line and no NYI
-- or trace abort; otherwise a message with the log. One abort is benign and
-- allowed: "leaving loop in root trace", when a loop turned hot (hot
-- counters are hashed and shared between loops) on its last iteration.
function M.problem(text, file, line)
  for l in text:gmatch("[^\n]+") do
    if l:find("NYI", 1, true) or (l:find("TRACE ---", 1, true)
        and not l:find("leaving loop in root trace", 1, true)) then
      return "trace aborted:\n" .. text
    end
  end
  local pat = "%[TRACE%s+%d+%s+" .. file:gsub("%.", "%%.") .. ":" .. line .. " loop%]"
  if not text:find(pat) then return "no loop trace at " .. file .. ":" .. line .. ":\n" .. text end
end

-- The line number of the caller's next line (where the loop starts).
function M.next_line()
  return debug.getinfo(2, "l").currentline + 1
end

return M
