/*
** thread.c -- workers: an OS thread running its own LuaJIT state.
**
** The shim resolves the Lua C API from the running executable (luajit
** exports it), so it never loads a second copy of LuaJIT. The worker's state
** is created, used and closed on the worker's own thread; no Lua object is
** ever touched by two threads.
*/
#include "shim.h"
#include <dlfcn.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

struct ffipar_thread {
  ffipar_obj hdr;              /* refs: the Lua handle and the running worker */
  int id;
  _Atomic uint32_t done;       /* futex word: 0 running, 1 finished */
  _Atomic int cancel;
  int failed;
  ffipar_msg *payload;
  ffipar_msg *results;
  char *err;
  size_t errlen;
  char *path, *cpath;
  pthread_mutex_t wlock;       /* guards `waiting` against ffipar_thread_cancel */
  _Atomic uint32_t *waiting;   /* the futex this worker sleeps on, or NULL */
};

static _Thread_local ffipar_thread *self;
static _Atomic int next_id = 1;

static void thread_destroy(ffipar_obj *o)
{
  ffipar_thread *t = (ffipar_thread *)o;
  ffipar_msg_free(t->payload);
  ffipar_msg_free(t->results);
  free(t->err);
  free(t->path);
  free(t->cpath);
  pthread_mutex_destroy(&t->wlock);
  free(t);
}

int ffipar_self_id(void)
{
  return self ? self->id : 0;
}

int self_cancelled(void)
{
  /* Acquire pairs with the release store in ffipar_thread_cancel. */
  return self && atomic_load_explicit(&self->cancel, memory_order_acquire);
}

int ffipar_self_cancelled(void)
{
  return self_cancelled();
}

int thread_wait_begin(_Atomic uint32_t *addr)
{
  if (!self) return 0;
  pthread_mutex_lock(&self->wlock);
  self->waiting = addr;
  pthread_mutex_unlock(&self->wlock);
  return self_cancelled() ? -1 : 1;
}

void thread_wait_end(void)
{
  if (!self) return;
  pthread_mutex_lock(&self->wlock);
  self->waiting = NULL;
  pthread_mutex_unlock(&self->wlock);
}

void ffipar_thread_cancel(ffipar_thread *t)
{
  atomic_store_explicit(&t->cancel, 1, memory_order_release);
  /* Under wlock the futex cannot be unregistered (and its object freed)
  ** while we wake it. */
  pthread_mutex_lock(&t->wlock);
  if (t->waiting) futex_wake(t->waiting, 0x7fffffff);
  pthread_mutex_unlock(&t->wlock);
}

static char *dupn(const char *s, size_t len)
{
  char *d = malloc(len + 1);
  if (d) { memcpy(d, s, len); d[len] = 0; }
  return d;
}

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

static void finish(ffipar_thread *t)
{
  /* Release: the joiner's acquire load of `done` sees results and errors. */
  atomic_store_explicit(&t->done, 1, memory_order_release);
  futex_wake(&t->done, 0x7fffffff);
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

/* ---- worker states ---- */

/* Worker states allocate from a per-runner arena first: a new state makes
** ~500 small allocations that live as long as it does, and bumping a
** pointer through memory the runner's previous state left warm is far
** cheaper than malloc or LuaJIT's own mmap-backed allocator. Frees inside
** the arena are ignored (the space comes back when the state closes); past
** the arena, malloc takes over. LuaJIT accepts a custom allocator on 64-bit
** only with GC64; where it refuses, luaL_newstate is used. */
#define ARENA_SIZE (256 * 1024)

typedef struct arena {
  char *base;
  size_t top;
} arena;

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

static int state_panic(lua_State *L)
{
  (void)L;
  return 0;   /* unreachable: workers run everything under lua_pcall */
}

static lua_State *state_new(arena *a)
{
  a->top = 0;
  if (!a->base) a->base = malloc(ARENA_SIZE);
  lua_State *L = lua_newstate(state_alloc, a);
  if (!L) L = luaL_newstate();
  if (!L) return NULL;
  lua_atpanic(L, state_panic);
  luaL_openlibs(L);
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

static void fail_with_top(ffipar_thread *t, lua_State *L)
{
  size_t len = 0;
  const char *e = lua_tolstring(L, -1, &len);
  if (!e) { e = "(error object is not a string)"; len = strlen(e); }
  ffipar_thread_fail(t, e, len);
}

/* Run one spawned function in L: require("ffipar.worker").run(t, data). */
static void run_job(lua_State *L, ffipar_thread *t)
{
  lua_getglobal(L, "package");
  lua_pushstring(L, t->path);
  lua_setfield(L, -2, "path");
  lua_pushstring(L, t->cpath);
  lua_setfield(L, -2, "cpath");
  lua_pop(L, 1);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "ffipar.worker");
  if (lua_pcall(L, 1, 1, 0) != 0) { fail_with_top(t, L); return; }
  lua_getfield(L, -1, "run");
  lua_pushlightuserdata(L, t);
  if (ffipar_msg_nobjs(t->payload) == 0) {
    size_t len;
    const char *data = ffipar_msg_data(t->payload, &len);
    lua_pushlstring(L, data, len);
  } else {
    lua_pushnil(L);
  }
  if (lua_pcall(L, 2, 2, 0) != 0) { fail_with_top(t, L); return; }
  if (!lua_toboolean(L, -2)) { fail_with_top(t, L); return; }
  if (lua_isstring(L, -1) && !t->results) {
    size_t len;
    const char *r = lua_tolstring(L, -1, &len);
    t->results = ffipar_msg_new(r, len, NULL, 0);
    if (!t->results) ffipar_thread_fail(t, "out of memory for results", 26);
  }
}

/* An OS thread that runs spawned functions one after another, each in a
** fresh state, and parks in between. */
typedef struct runner {
  _Atomic uint32_t go;          /* futex: 0 parked, 1 a job was handed over */
  ffipar_thread *job;
  lua_State *L;                 /* a fresh, never used state, or NULL */
  arena mem;                    /* where L allocates first */
  struct runner *next;
} runner;

static pthread_mutex_t idle_lock = PTHREAD_MUTEX_INITIALIZER;
static runner *idle;
static int nidle;
#define IDLE_NS 2000000000LL     /* a parked runner exits after 2 s unused */

static int max_idle(void)
{
  int n = 2 * ffipar_cpus();
  return n < 4 ? 4 : n;
}

/* Wait until a job is handed over (1) or, after IDLE_NS unused, leave the
** idle list and return 0. */
static int park(runner *r)
{
  pthread_mutex_lock(&idle_lock);
  if (nidle >= max_idle()) { pthread_mutex_unlock(&idle_lock); return 0; }
  atomic_store_explicit(&r->go, 0, memory_order_relaxed);
  r->next = idle;
  idle = r;
  nidle++;
  pthread_mutex_unlock(&idle_lock);
  int64_t deadline = now_ns() + IDLE_NS;
  for (;;) {
    /* Acquire pairs with the spawner's release: r->job is visible. */
    if (atomic_load_explicit(&r->go, memory_order_acquire)) return 1;
    if (futex_wait(&r->go, 0, deadline) != FFIPAR_ETIMEOUT) continue;
    pthread_mutex_lock(&idle_lock);
    runner **pp = &idle;
    while (*pp && *pp != r) pp = &(*pp)->next;
    int listed = *pp != NULL;
    if (listed) { *pp = r->next; nidle--; }
    pthread_mutex_unlock(&idle_lock);
    if (listed) return 0;
    /* A spawner took us off the list under the lock and is about to set
    ** `go`: wait for it with no deadline. */
    deadline = -1;
  }
}

static void *runner_main(void *arg)
{
  runner *r = arg;
  do {
    ffipar_thread *t = r->job;
    r->job = NULL;
    if (!r->L) r->L = state_new(&r->mem);
    self = t;
    if (!r->L) ffipar_thread_fail(t, "cannot create a Lua state (out of memory)", 41);
    else run_job(r->L, t);
    self = NULL;
    /* Results are out: let the joiner go, then close the state. Handles the
    ** worker held are released a moment after join returns. */
    finish(t);
    ffipar_obj_release(&t->hdr);
    if (r->L) lua_close(r->L);
    r->L = NULL;
    r->L = state_new(&r->mem);        /* ready before the next spawn asks */
  } while (park(r));
  if (r->L) lua_close(r->L);
  free(r->mem.base);
  free(r);
  return NULL;
}

static int start(ffipar_thread *t)
{
  pthread_mutex_lock(&idle_lock);
  runner *r = idle;
  if (r) { idle = r->next; nidle--; }
  pthread_mutex_unlock(&idle_lock);
  if (r) {
    r->job = t;
    /* Release: the runner's acquire load of `go` sees r->job. */
    atomic_store_explicit(&r->go, 1, memory_order_release);
    futex_wake(&r->go, 1);
    return FFIPAR_OK;
  }
  r = calloc(1, sizeof(*r));
  if (!r) return FFIPAR_ENOMEM;
  r->job = t;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, runner_main, r);
  pthread_attr_destroy(&attr);
  if (rc != 0) { free(r); return FFIPAR_ESYS; }
  return FFIPAR_OK;
}

int ffipar_thread_new(ffipar_thread **out, ffipar_msg *payload,
                      const char *path, const char *cpath)
{
  if (!payload) return FFIPAR_EINVAL;
  ffipar_thread *t = calloc(1, sizeof(*t));
  if (!t) { ffipar_msg_free(payload); return FFIPAR_ENOMEM; }
  obj_init(&t->hdr, FFIPAR_KTHREAD, thread_destroy);
  pthread_mutex_init(&t->wlock, NULL);
  t->payload = payload;
  t->path = dupn(path, strlen(path));
  t->cpath = dupn(cpath, strlen(cpath));
  if (!t->path || !t->cpath) {
    ffipar_obj_release(&t->hdr);
    return FFIPAR_ENOMEM;
  }
  t->id = atomic_fetch_add(&next_id, 1);
  ffipar_obj_retain(&t->hdr);                /* the worker's own reference */
  int rc = start(t);
  if (rc != 0) {
    ffipar_obj_release(&t->hdr);              /* the worker's, never used */
    ffipar_obj_release(&t->hdr);
    return rc;
  }
  *out = t;
  return FFIPAR_OK;
}

ffipar_msg *ffipar_thread_payload(ffipar_thread *t)
{
  return t->payload;
}

void ffipar_thread_succeed(ffipar_thread *t, ffipar_msg *results)
{
  t->results = results;
}

void ffipar_thread_fail(ffipar_thread *t, const char *err, size_t len)
{
  free(t->err);
  t->err = dupn(err, len);
  t->errlen = t->err ? len : 0;
  t->failed = 1;
}

int ffipar_thread_join(ffipar_thread *t, double timeout)
{
  int64_t deadline = deadline_of(timeout);
  for (;;) {
    if (atomic_load_explicit(&t->done, memory_order_acquire)) return FFIPAR_OK;
    int rc = futex_wait(&t->done, 0, deadline);
    if (rc != FFIPAR_OK) {
      if (atomic_load_explicit(&t->done, memory_order_acquire)) return FFIPAR_OK;
      return rc;
    }
  }
}

int ffipar_thread_status(const ffipar_thread *t)
{
  if (!atomic_load_explicit(&t->done, memory_order_acquire)) return 0;
  if (!t->failed) return 1;
  return atomic_load_explicit(&t->cancel, memory_order_acquire) ? 3 : 2;
}

const ffipar_msg *ffipar_thread_results(const ffipar_thread *t)
{
  return t->results;
}

const char *ffipar_thread_error(const ffipar_thread *t, size_t *len)
{
  *len = t->errlen;
  return t->err ? t->err : "";
}

int ffipar_thread_id(const ffipar_thread *t)
{
  return t->id;
}
