-- LuaRocks: `luarocks make` in this tree builds the shim with the Makefile
-- and installs the module into the rocks tree (LUADIR) and the shim next to
-- other C modules (LIBDIR), where ffipar finds it through package.cpath.
-- Needs LuaJIT 2.1 (ffi) to run, and gcc/make; tests: `make test`.
package = "ffipar"
version = "scm-1"
source = {
  url = "git+file://./",   -- `luarocks make` builds the tree it is run in
}
description = {
  summary = "Every core for a LuaJIT program: threads with their own states, shared FFI memory",
  detailed = [[
ffipar is a LuaJIT FFI threading library: each worker thread runs its own
LuaJIT state, and workers share typed FFI memory (arrays and structs at the
same address in every state). A small C shim provides threads, mutexes,
condition variables, barriers, semaphores, atomics, channels, a color gate
and a pool with parallel_for, argmax and map_reduce.
]],
}
dependencies = {
  "lua == 5.1",
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
  },
  install_variables = {
    PREFIX = "$(PREFIX)",
    LUA_LIBDIR = "$(LIBDIR)",
    LUA_SHAREDIR = "$(LUADIR)",
  },
}
