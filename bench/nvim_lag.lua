-- bench/nvim_lag.lua: loop_lag inside headless Neovim (vim.loop, the loop
-- run by vim.wait); prints "lag <ms>". Run by bench_uv.lua:
--   nvim --headless -u NONE -i NONE -n -c 'luafile bench/nvim_lag.lua' -c 'qa!'
local ok, r = pcall(function()
  local lag = require "loop_lag"
  return lag(vim.loop, require "ffipar.uv", function(cond)
    assert(vim.wait(60000, cond, 1), "nvim_lag: the tasks did not end in 60 s")
  end)
end)
io.stdout:write(ok and ("lag %.3f\n"):format(r) or ("error " .. tostring(r) .. "\n"))
