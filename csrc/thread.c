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
  char *boot, *path, *cpath;
  size_t bootlen;
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
  free(t->boot);
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

const char *ffipar_lib_path(void)
{
  static char path[4096];
  Dl_info info;
  if (!path[0] && dladdr((void *)ffipar_lib_path, &info) && info.dli_fname)
    strncpy(path, info.dli_fname, sizeof(path) - 1);
  return path;
}

static void finish(ffipar_thread *t)
{
  /* Release: the joiner's acquire load of `done` sees results and errors. */
  atomic_store_explicit(&t->done, 1, memory_order_release);
  futex_wake(&t->done, 0x7fffffff);
}

static void *thread_main(void *arg)
{
  ffipar_thread *t = arg;
  self = t;
  lua_State *L = luaL_newstate();
  if (!L) {
    ffipar_thread_fail(t, "cannot create a Lua state (out of memory)", 41);
  } else {
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, t->path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, t->cpath);
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, t->boot, t->bootlen, "=ffipar.boot") != 0) {
      size_t len;
      const char *e = lua_tolstring(L, -1, &len);
      ffipar_thread_fail(t, e, len);
    } else {
      lua_pushlightuserdata(L, t);
      lua_pushstring(L, ffipar_lib_path());
      if (lua_pcall(L, 2, 0, 0) != 0) {
        /* The boot chunk reports the worker's own errors itself; this is
        ** an error in ffipar's start-up (module not found, ...). */
        size_t len;
        const char *e = lua_tolstring(L, -1, &len);
        if (!t->failed && !t->results) ffipar_thread_fail(t, e ? e : "?", e ? len : 1);
      }
    }
    lua_close(L);
  }
  self = NULL;
  finish(t);
  ffipar_obj_release(&t->hdr);
  return NULL;
}

int ffipar_thread_new(ffipar_thread **out, const char *boot, size_t bootlen,
                      ffipar_msg *payload, const char *path, const char *cpath)
{
  ffipar_thread *t = calloc(1, sizeof(*t));
  if (!t) { ffipar_msg_free(payload); return FFIPAR_ENOMEM; }
  obj_init(&t->hdr, FFIPAR_KTHREAD, thread_destroy);
  pthread_mutex_init(&t->wlock, NULL);
  t->payload = payload;
  t->boot = dupn(boot, bootlen);
  t->bootlen = bootlen;
  t->path = dupn(path, strlen(path));
  t->cpath = dupn(cpath, strlen(cpath));
  if (!t->boot || !t->path || !t->cpath) {
    ffipar_obj_release(&t->hdr);
    return FFIPAR_ENOMEM;
  }
  t->id = atomic_fetch_add(&next_id, 1);
  (void)ffipar_lib_path();  /* fill the cached path now: pthread_create orders it before workers read it */
  ffipar_obj_retain(&t->hdr);                /* the worker's own reference */
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, thread_main, t);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    ffipar_obj_release(&t->hdr);              /* the worker's, never used */
    ffipar_obj_release(&t->hdr);
    return FFIPAR_ESYS;
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
