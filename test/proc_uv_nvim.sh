#!/bin/bash
# The event-loop scenarios inside headless Neovim (vim.loop, vim.wait):
# test/nvim_uv.lua exits 0 when every check holds.
set -e
cd "$(dirname "$0")/.."
# Under make asan/tsan the shim needs the sanitizer runtime preloaded into
# nvim too (run.lua passes it in FFIPAR_LUAJIT as "env LD_PRELOAD=...").
pre=
case "${FFIPAR_LUAJIT:-}" in "env LD_PRELOAD="*) pre=${FFIPAR_LUAJIT#env }; pre=${pre%% *} ;; esac
export LUA_PATH="ffi/?.lua;test/?.lua;;"
env $pre nvim --headless -u NONE -i NONE -n -c 'luafile test/nvim_uv.lua' -c 'cquit 2'
# The example, as its header says to run it: the matches reach the quickfix list.
out=$(FUZZY_QUERY=futexwait FUZZY_ROOT=csrc FUZZY_CHECK=1 env $pre nvim --headless -u NONE -i NONE -n \
  -c 'luafile examples/nvim_fuzzy.lua' -c 'lua io.stdout:write(#vim.fn.getqflist(), " in quickfix\n")' -c 'qa!')
echo "$out"
echo "$out" | grep -q "^check: the serial search finds the same lines" || { echo "nvim_fuzzy: no check line"; exit 1; }
echo "$out" | grep -q "^10 in quickfix" || { echo "nvim_fuzzy: quickfix not filled"; exit 1; }
