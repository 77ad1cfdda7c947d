/* tsan_luajit: a minimal `luajit script args...` built with ThreadSanitizer,
** for `make tsan-exe` (mk/channel.mk). Preloading the tsan runtime into the
** stock luajit crashes before main with clang 14 (its __cxa_atexit
** interceptor runs before the runtime is initialized); an executable that
** links the runtime itself initializes it first, and the shim, built with
** -fsanitize=thread, binds to that runtime. */
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static int traceback(lua_State *L)
{
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

int main(int argc, char **argv)
{
  if (argc < 2) { fprintf(stderr, "usage: tsan_luajit script [args]\n"); return 2; }
  lua_State *L = luaL_newstate();
  if (!L) return 1;
  luaL_openlibs(L);
  lua_createtable(L, argc, 2);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - 1);            /* arg[-1] = this program, arg[0] = script */
  }
  lua_setglobal(L, "arg");
  lua_pushcfunction(L, traceback);
  if (luaL_loadfile(L, argv[1]) != 0) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    return 1;
  }
  for (int i = 2; i < argc; i++) lua_pushstring(L, argv[i]);
  int rc = lua_pcall(L, argc - 2, 0, -(argc - 2) - 2);
  if (rc != 0) fprintf(stderr, "%s\n", lua_tostring(L, -1));
  lua_close(L);
  return rc != 0;
}
