/*
** state.c -- new LuaJIT states for workers: created fast (an arena
** allocator, ffipar's modules from a bytecode cache) and ready to run.
**
** The shim resolves the Lua C API from the running executable (luajit
** exports it), so it never loads a second copy of LuaJIT.
*/
#include "shim.h"
#include <dlfcn.h>
#include <stdio.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

static char lib_path[4096];
static pthread_once_t lib_path_once = PTHREAD_ONCE_INIT;

static void find_lib_path(void)
{
  Dl_info info;
  if (dladdr((void *)ffipar_lib_path, &info) && info.dli_fname)
    strncpy(lib_path, info.dli_fname, sizeof(lib_path) - 1);
}

const char *ffipar_lib_path(void)
{
  pthread_once(&lib_path_once, find_lib_path);
  return lib_path;
}

/* ---- the module bytecode cache ---- */

typedef struct modentry {
  struct modentry *next;
  size_t len;
  char *code;
  char name[];
} modentry;

/* Entries are never changed or freed once published, so the searcher may
** use one after dropping the lock. */
static pthread_mutex_t mod_lock = PTHREAD_MUTEX_INITIALIZER;
static modentry *mods;

static modentry *mod_find(const char *name)
{
  pthread_mutex_lock(&mod_lock);
  modentry *e = mods;
  while (e && strcmp(e->name, name) != 0) e = e->next;
  pthread_mutex_unlock(&mod_lock);
  return e;
}

int ffipar_modcache_has(const char *name)
{
  return mod_find(name) != NULL;
}

int ffipar_modcache_put(const char *name, const char *code, size_t len)
{
  size_t nlen = strlen(name);
  modentry *e = malloc(sizeof(*e) + nlen + 1);
  char *c = malloc(len ? len : 1);
  if (!e || !c) { free(e); free(c); return FFIPAR_ENOMEM; }
  memcpy(e->name, name, nlen + 1);
  memcpy(c, code, len);
  e->code = c;
  e->len = len;
  pthread_mutex_lock(&mod_lock);
  modentry *x = mods;
  while (x && strcmp(x->name, name) != 0) x = x->next;
  if (!x) { e->next = mods; mods = e; }
  pthread_mutex_unlock(&mod_lock);
  if (x) { free(c); free(e); }
  return FFIPAR_OK;
}

/* A package.loaders entry: load a cached module's bytecode. */
static int cache_searcher(lua_State *L)
{
  const char *name = luaL_checkstring(L, 1);
  modentry *e = mod_find(name);
  if (!e) {
    lua_pushfstring(L, "\n\tno cached ffipar module '%s'", name);
    return 1;
  }
  if (luaL_loadbuffer(L, e->code, e->len, name) != 0) return lua_error(L);
  return 1;
}

/* Worker states allocate from a per-runner arena first: a new state makes
** ~500 small allocations that live as long as it does, and bumping a
** pointer through memory the runner's previous state left warm is far
** cheaper than malloc or LuaJIT's own mmap-backed allocator. Frees inside
** the arena are ignored (the space comes back when the state closes); past
** the arena, malloc takes over. LuaJIT accepts a custom allocator on 64-bit
** only with GC64 (without it, lua_newstate prints an error and fails): the
** Lua side knows the build (ffi.abi) and says once which to use; until it
** does, luaL_newstate is used. */
#define ARENA_SIZE (256 * 1024)

static void *arena_get(arena *a, size_t n)
{
  n = (n + 15) & ~(size_t)15;
  if (!a->base || a->top + n > ARENA_SIZE) return NULL;
  void *p = a->base + a->top;
  a->top += n;
  return p;
}

static void *state_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
  arena *a = ud;
  int inside = p && a->base && (char *)p >= a->base && (char *)p < a->base + ARENA_SIZE;
  if (nsize == 0) {
    if (!inside) free(p);
    return NULL;
  }
  if (inside) {
    if (nsize <= osize) return p;
    void *q = arena_get(a, nsize);
    if (!q) q = malloc(nsize);
    if (q) memcpy(q, p, osize);
    return q;
  }
  if (!p) {
    void *q = arena_get(a, nsize);
    if (q) return q;
  }
  return realloc(p, nsize);
}

/* Workers run everything under lua_pcall, so this is a bug in ffipar (e.g.
** a C API call past the stack's end); LuaJIT exits after it returns, and
** the message says why. */
static int state_panic(lua_State *L)
{
  const char *e = lua_tostring(L, -1);
  fprintf(stderr, "ffipar: unprotected error in a worker's Lua state: %s\n", e ? e : "?");
  return 0;
}

/* Set before the first worker state is made (by the state that spawns),
** read by the threads that make states; relaxed: a thread that makes a
** state was started, or handed its job, after the store. */
static atomic_int own_alloc;

void ffipar_state_own_alloc(int yes)
{
  atomic_store_explicit(&own_alloc, yes != 0, memory_order_relaxed);
}

/* LuaJIT's own handler for errors in __gc (as luaL_newstate installs it,
** in builds since 2023 that pass them to an "errfin" event instead of
** raising them where the collector ran). */
static int state_error_finalizer(lua_State *L)
{
  const char *e = lua_tostring(L, -1);
  fprintf(stderr, "ERROR in finalizer: %s\n", e ? e : "?");
  fflush(stderr);
  return 0;
}

lua_State *state_new(arena *a)
{
  lua_State *L;
  if (atomic_load_explicit(&own_alloc, memory_order_relaxed)) {
    a->top = 0;
    if (!a->base) a->base = malloc(ARENA_SIZE);
    L = lua_newstate(state_alloc, a);
  } else {
    L = luaL_newstate();
  }
  if (!L) return NULL;
  lua_atpanic(L, state_panic);
  luaL_openlibs(L);
  /* The errfin handler, whichever way the state was made (jit.attach is
  ** the public way to set it; a build without the event never calls it, a
  ** build without VM events refuses, which is fine). */
  lua_getglobal(L, "jit");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "attach");
    lua_pushcfunction(L, state_error_finalizer);
    lua_pushliteral(L, "errfin");
    lua_pcall(L, 2, 0, 0) == 0 ? (void)0 : lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "loaders");               /* insert after preload */
  int n = (int)lua_objlen(L, -1);
  for (int i = n; i >= 2; i--) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushcfunction(L, cache_searcher);
  lua_rawseti(L, -2, 2);
  lua_pop(L, 1);
  lua_getfield(L, -1, "loaded");
  lua_pushstring(L, ffipar_lib_path());
  lua_setfield(L, -2, "ffipar.libpath");
  lua_pop(L, 2);
  /* Load the worker module now, off the spawn's critical path (it comes
  ** from the module cache, which the first spawn filled). */
  if (ffipar_modcache_has("ffipar.worker")) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "ffipar.worker");
    lua_pcall(L, 1, 0, 0) == 0 ? (void)0 : lua_pop(L, 1);
  }
  return L;
}

void state_free(arena *a)
{
  free(a->base);
  a->base = NULL;
}

void state_set_paths(lua_State *L, const char *path, const char *cpath)
{
  lua_getglobal(L, "package");
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
}
