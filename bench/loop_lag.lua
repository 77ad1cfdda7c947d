-- The worst lateness of a 10 ms loop timer, in ms, while two tasks compute
-- for 1 s on a 2-worker pool (both cores): the loop competes with the two
-- workers for the two cores and the kernel decides. Shared by bench_uv.lua
-- (plain luv) and nvim_lag.lua (inside headless Neovim, on vim.loop);
-- wait(cond) runs the loop until cond() holds.
local par = require "ffipar"

return function(uv, uvpar, wait)
  local pool = par.pool(2)
  local lag, last, left = 0, uv.hrtime(), 2
  local timer = uv.new_timer()
  timer:start(10, 10, function()
    local now = uv.hrtime()
    lag = math.max(lag, (now - last) / 1e6 - 10)
    last = now
  end)
  for _ = 1, 2 do
    uvpar.submit(pool, function()
      local p = require "ffipar"
      local t_end, x = p.now() + 1, 1
      repeat
        for _ = 1, 20000 do x = (x * 1103515245 + 12345) % 2147483648 end
      until p.now() >= t_end
      return x
    end, function() left = left - 1 end)
  end
  wait(function() return left == 0 end)
  timer:stop()
  timer:close()
  pool:close()
  return lag
end
