/*
** thread.c -- workers: an OS thread running its own LuaJIT state.
**
** A spawned function runs on a "runner": an OS thread that takes one job at
** a time, each in a fresh state (state.c), and parks in between so the next
** spawn skips pthread_create. A state is created, used and closed on its
** runner's thread; no Lua object is ever touched by two threads.
*/
#include "shim.h"
#include <errno.h>
#include <sched.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

struct ffipar_thread {
  ffipar_obj hdr;              /* refs: the Lua handle and the running worker */
  int id;
  _Atomic uint32_t done;       /* futex word: RUNNING, WAITED or DONE */
  int spin;                    /* a joiner spins a little first (pool tasks) */
  _Atomic int cancel;
  int failed;
  ffipar_msg *payload;
  ffipar_msg *results;
  char *err;
  size_t errlen;
  char *path, *cpath;
  pthread_mutex_t wlock;       /* guards `waiting` against ffipar_thread_cancel,
                               ** and the readiness descriptor's signal and reset */
  _Atomic uint32_t *waiting;   /* the futex this worker sleeps on, or NULL */
  _Atomic int evfd;            /* the readiness descriptor: FD_NONE, FD_CLOSED or >= 0 */
  _Atomic int consumed;        /* a join succeeded: never signal again */
  int signalled;               /* evfd was signalled (under wlock) */
};

/* The readiness descriptor (ffipar_thread_fd) is made on first request and
** signalled once the thread is DONE and not yet joined: by finish() when the
** descriptor exists by then, else by its creator when it finds the thread
** DONE. finish() exchanges `done` then loads `evfd`; the creator stores
** `evfd` then loads `done`; all seq_cst, so in their one total order at
** least one side sees the other's write and signals (both may: `signalled`
** makes it one write). The first successful join consumes the readiness: it
** stores `consumed` then loads `evfd`, against the creator's store of `evfd`
** then load of `consumed` (Dekker again): either the creator sees the join
** and never signals, or the join sees the descriptor and resets it. Every
** signal and reset happens under wlock, after a look at `consumed` and at
** `evfd` (FD_CLOSED once ffipar_thread_fd_close ran), so once the first
** join has returned the descriptor is not readable and never will be, and
** no write ever reaches a closed descriptor. A readable descriptor means
** join(0) succeeds: every signal comes after DONE. */
enum { FD_NONE = -1, FD_CLOSED = -2 };

/* Signal the descriptor unless a join consumed the readiness. */
static void fd_ready(ffipar_thread *t)
{
  pthread_mutex_lock(&t->wlock);
  int fd = atomic_load_explicit(&t->evfd, memory_order_relaxed);
  if (fd >= 0 && !t->signalled && !atomic_load(&t->consumed)) {
    fd_signal(fd);
    t->signalled = 1;
  }
  pthread_mutex_unlock(&t->wlock);
}

/* `done`: WAITED means a joiner sleeps (or is about to) on the word, so
** finish() makes the wake-up call only when someone needs it. */
enum { RUNNING = 0, WAITED = 1, DONE = 2 };
/* How long joining a pool task spins before it sleeps. A futex sleep and
** wake-up costs 30-150 us on the 2-core VM we measure on, and a waiting
** thread there is often held up for more than 20 us: with 20 us, 10-30% of
** pool round trips slept; with 100 us, under 2% (make bench, round trip). */
#define JOIN_SPIN_NS 100000

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
  fd_close(atomic_load_explicit(&t->evfd, memory_order_relaxed));   /* last ref: no one else */
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

static void finish(ffipar_thread *t)
{
  /* The joiner's acquire load of `done` sees results and errors (release
  ** would do for that); seq_cst, with the load of evfd after it, for the
  ** descriptor (see the top). The worker's reference keeps t and its
  ** descriptor alive until we return. */
  if (atomic_exchange(&t->done, DONE) == WAITED)
    futex_wake(&t->done, 0x7fffffff);
  if (atomic_load(&t->evfd) >= 0) fd_ready(t);
}

static void fail_with_top(ffipar_thread *t, lua_State *L)
{
  size_t len = 0;
  const char *e = lua_tolstring(L, -1, &len);
  if (!e) { e = "(error object is not a string)"; len = strlen(e); }
  ffipar_thread_fail(t, e, len);
}

/* One spawned function in L: require("ffipar.worker").run(t, data). */
static void run_job_on_stack(lua_State *L, ffipar_thread *t)
{
  if (t->path) state_set_paths(L, t->path, t->cpath);
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

/* A pool worker's L runs task after task: leave its stack as it was. */
static void run_job(lua_State *L, ffipar_thread *t)
{
  int top = lua_gettop(L);
  run_job_on_stack(L, t);
  lua_settop(L, top);
}

/* An OS thread that runs spawned functions one after another, each in a
** fresh state, and parks in between. */
typedef struct runner {
  _Atomic uint32_t go;          /* futex: 0 parked, 1 a job was handed over */
  ffipar_thread *job;
  cpu_set_t cpus;               /* the affinity it started with */
  int has_cpus;
  lua_State *L;                 /* a fresh, never used state, or NULL */
  arena mem;                    /* where L allocates first (state.c) */
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

void thread_run(lua_State *L, ffipar_thread *t)
{
  self = t;
  if (!L) ffipar_thread_fail(t, "cannot create a Lua state (out of memory)", 41);
  else run_job(L, t);
  self = NULL;
  gate_forget_thread();
  finish(t);
  ffipar_obj_release(&t->hdr);
}

static void *runner_main(void *arg)
{
  runner *r = arg;
  r->has_cpus = sched_getaffinity(0, sizeof(r->cpus), &r->cpus) == 0;
  do {
    ffipar_thread *t = r->job;
    r->job = NULL;
    if (!r->L) r->L = state_new(&r->mem);
    thread_run(r->L, t);
    /* The joiner is on its way: close the state (handles the worker held
    ** are released a moment after join returns) and prepare the next one
    ** before the next spawn asks. */
    if (r->L) lua_close(r->L);
    /* A job may have pinned this thread (through the FFI); the next spawn
    ** gets the thread as it started. */
    if (r->has_cpus) sched_setaffinity(0, sizeof(r->cpus), &r->cpus);
    r->L = state_new(&r->mem);
  } while (park(r));
  if (r->L) lua_close(r->L);
  state_free(&r->mem);
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
  int rc = os_thread_start(runner_main, r);
  if (rc != 0) free(r);
  return rc;
}

/* pthread_create's error as a return code: EAGAIN is a limit (threads of
** the user, of the system, or memory for the stack). */
int os_thread_start(void *(*fn)(void *), void *arg)
{
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, fn, arg);
  pthread_attr_destroy(&attr);
  if (rc == 0) return FFIPAR_OK;
  return rc == EAGAIN ? FFIPAR_EAGAIN : FFIPAR_ESYS;
}

ffipar_thread *thread_alloc(ffipar_msg *payload, const char *path, const char *cpath,
                            int spin)
{
  ffipar_thread *t = calloc(1, sizeof(*t));
  if (!t) { ffipar_msg_free(payload); return NULL; }
  obj_init(&t->hdr, FFIPAR_KTHREAD, thread_destroy);
  pthread_mutex_init(&t->wlock, NULL);
  atomic_init(&t->evfd, FD_NONE);
  t->payload = payload;
  t->spin = spin;
  if (path) {
    t->path = dupn(path, strlen(path));
    t->cpath = dupn(cpath, strlen(cpath));
  }
  if (path && (!t->path || !t->cpath)) {
    ffipar_obj_release(&t->hdr);
    return NULL;
  }
  t->id = atomic_fetch_add(&next_id, 1);
  ffipar_obj_retain(&t->hdr);                /* the one thread_run drops */
  return t;
}

int ffipar_thread_new(ffipar_thread **out, ffipar_msg *payload,
                      const char *path, const char *cpath)
{
  if (!payload) return FFIPAR_EINVAL;
  ffipar_thread *t = thread_alloc(payload, path, cpath, 0);
  if (!t) return FFIPAR_ENOMEM;
  int rc = start(t);
  if (rc != 0) {
    ffipar_obj_release(&t->hdr);              /* the runner's, never used */
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

/* A join succeeded: it consumes the readiness, signalled or not (see the
** top). Without a descriptor: one seq_cst store and one load. */
static int joined(ffipar_thread *t)
{
  atomic_store(&t->consumed, 1);
  if (atomic_load(&t->evfd) >= 0) {
    pthread_mutex_lock(&t->wlock);
    int fd = atomic_load_explicit(&t->evfd, memory_order_relaxed);
    if (fd >= 0 && t->signalled) fd_reset(fd);
    t->signalled = 0;
    pthread_mutex_unlock(&t->wlock);
  }
  return FFIPAR_OK;
}

/* No reset, so neither wlock nor a system call: a worker that has just set
** DONE may still hold wlock while it writes to the descriptor, and a loop
** woken by that write would sleep on the lock until the write returns
** (measured: 2-3 us of a 45 us wake-up). The seq_cst store of `consumed`
** is the one joined() makes: after it no signal starts. */
int ffipar_thread_take(ffipar_thread *t)
{
  /* Acquire, as in ffipar_thread_join. */
  if (atomic_load_explicit(&t->done, memory_order_acquire) != DONE) return FFIPAR_ETIMEOUT;
  atomic_store(&t->consumed, 1);
  return FFIPAR_OK;
}

int ffipar_thread_join(ffipar_thread *t, double timeout)
{
  int64_t deadline = deadline_of(timeout);
  if (t->spin && deadline != 0) spin_while(&t->done, RUNNING, JOIN_SPIN_NS);
  for (;;) {
    uint32_t v = atomic_load_explicit(&t->done, memory_order_acquire);
    if (v == DONE) return joined(t);
    if (v == RUNNING &&
        !atomic_compare_exchange_strong(&t->done, &v, WAITED))
      continue;                              /* it changed: look again */
    int rc = futex_wait(&t->done, WAITED, deadline);
    if (rc != FFIPAR_OK) {
      if (atomic_load_explicit(&t->done, memory_order_acquire) == DONE) return joined(t);
      return rc;
    }
  }
}

void ffipar_thread_wait(ffipar_thread *t)
{
  for (;;) {
    /* Acquire, as in ffipar_thread_join. */
    uint32_t v = atomic_load_explicit(&t->done, memory_order_acquire);
    if (v == DONE) return;
    if (v == RUNNING &&
        !atomic_compare_exchange_strong(&t->done, &v, WAITED))
      continue;
    /* Not futex_wait: that one returns at once in a cancelled worker. */
    syscall(SYS_futex, (uint32_t *)&t->done, FUTEX_WAIT | FUTEX_PRIVATE_FLAG,
            WAITED, NULL, NULL, 0);
  }
}

int ffipar_thread_fd(ffipar_thread *t, int *out)
{
  pthread_mutex_lock(&t->wlock);
  int fd = atomic_load_explicit(&t->evfd, memory_order_relaxed);
  if (fd == FD_NONE) {
    fd = fd_new();
    if (fd < 0) { pthread_mutex_unlock(&t->wlock); return FFIPAR_ESYS; }
    /* Seq_cst store, then seq_cst loads of `done` and `consumed` (see the
    ** top); we hold wlock, so fd_ready waits for us and finds it signalled. */
    atomic_store(&t->evfd, fd);
    if (atomic_load(&t->done) == DONE && !atomic_load(&t->consumed)) {
      fd_signal(fd);
      t->signalled = 1;
    }
  }
  pthread_mutex_unlock(&t->wlock);
  if (fd == FD_CLOSED) return FFIPAR_ECLOSED;
  *out = fd;
  return FFIPAR_OK;
}

int ffipar_thread_fd_close(ffipar_thread *t)
{
  pthread_mutex_lock(&t->wlock);
  int fd = atomic_load_explicit(&t->evfd, memory_order_relaxed);
  /* Relaxed store: every signal and reset looks again under wlock. */
  atomic_store_explicit(&t->evfd, FD_CLOSED, memory_order_relaxed);
  pthread_mutex_unlock(&t->wlock);
  fd_close(fd);
  return FFIPAR_OK;
}

int ffipar_thread_status(const ffipar_thread *t)
{
  if (atomic_load_explicit(&t->done, memory_order_acquire) != DONE) return 0;
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
