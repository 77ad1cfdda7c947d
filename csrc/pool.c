/*
** pool.c -- long-lived workers that take tasks from one queue.
**
** A pool worker is an OS thread with one LuaJIT state that it keeps across
** tasks (so a task's function is loaded once per worker, and JIT traces
** stay warm). A task is an ffipar_thread object: thread_run() runs it in the
** worker's state exactly as a spawned function runs in a fresh one.
*/
#include "shim.h"
#include <lua.h>

struct ffipar_pool {
  ffipar_obj hdr;               /* refs: the Lua handle and each worker */
  pthread_mutex_t lock;         /* guards the queue and `closed` */
  ffipar_thread **q;            /* ring of queued tasks */
  size_t cap, head, len;
  int closed;
  int started;
  int sleeping;                 /* workers asleep on `seq` (under lock) */
  _Atomic int spinning;         /* workers spinning on `seq` */
  _Atomic uint32_t seq;         /* futex: bumped on every push and on close */
  _Atomic uint32_t exited;      /* futex: workers that have exited */
  char *path, *cpath;
};

/* The calling thread's pool, in a pool worker. */
static _Thread_local ffipar_pool *mine;

static void pool_destroy(ffipar_obj *o)
{
  ffipar_pool *p = (ffipar_pool *)o;
  for (size_t i = 0; i < p->len; i++)
    ffipar_obj_release(p->q[(p->head + i) % p->cap]);
  free(p->q);
  free(p->path);
  free(p->cpath);
  pthread_mutex_destroy(&p->lock);
  free(p);
}

int ffipar_pool_new(ffipar_pool **out, const char *path, const char *cpath)
{
  ffipar_pool *p = calloc(1, sizeof(*p));
  if (!p) return FFIPAR_ENOMEM;
  obj_init(&p->hdr, FFIPAR_KPOOL, pool_destroy);
  pthread_mutex_init(&p->lock, NULL);
  p->path = strdup(path);
  p->cpath = strdup(cpath);
  if (!p->path || !p->cpath) { ffipar_obj_release(p); return FFIPAR_ENOMEM; }
  *out = p;
  return FFIPAR_OK;
}

/* How long an idle worker spins for the next task before it sleeps (the
** reason for 100 us is at JOIN_SPIN_NS in thread.c). */
#define TAKE_SPIN_NS 100000

/* The next task, or NULL once the pool is closed and drained. An idle
** worker spins a little first (a task that arrives then costs no wake-up
** call), then sleeps uninterrupted: between tasks it is no one's to cancel. */
static ffipar_thread *take(ffipar_pool *p)
{
  pthread_mutex_lock(&p->lock);
  int spun = 0;
  while (p->len == 0 && !p->closed) {
    uint32_t seen = atomic_load_explicit(&p->seq, memory_order_relaxed);
    if (!spun) {
      spun = 1;
      atomic_fetch_add(&p->spinning, 1);
      pthread_mutex_unlock(&p->lock);
      spin_while(&p->seq, seen, TAKE_SPIN_NS);
      /* Seq_cst, before taking the lock: a submit that still counts us as
      ** spinning skips its wake-up, and then finds... nothing to fix: it
      ** pushed under the lock before we look again below. */
      atomic_fetch_sub(&p->spinning, 1);
      pthread_mutex_lock(&p->lock);
      continue;
    }
    p->sleeping++;
    pthread_mutex_unlock(&p->lock);
    /* A push after we dropped the lock bumps seq first: no lost wake-up. */
    futex_wait(&p->seq, seen, -1);
    pthread_mutex_lock(&p->lock);
    p->sleeping--;
  }
  ffipar_thread *t = NULL;
  if (p->len) {
    t = p->q[p->head];
    p->head = (p->head + 1) % p->cap;
    p->len--;
  }
  pthread_mutex_unlock(&p->lock);
  return t;
}

/* Collection while idle. A task can leave its state tens of MB of garbage
** and no reason to allocate again (a parallel call's decoded parts: the
** collector rests during the call, see pool.lua). The collector then only
** runs when the next task allocates, on that task's time, over a heap that
** kept growing. So after a task that grew the heap by IDLE_GC_KB or more, an
** idle worker runs the collector in small steps until the cycle ends or a
** task is pushed (seq moves: the step in progress is all a task waits, a few
** microseconds). Never while the state's collector is stopped. */
#define IDLE_GC_KB 4096
#define IDLE_GC_STEP_KB 16

static void collect_while_idle(ffipar_pool *p, lua_State *L, int *base_kb)
{
  if (!lua_gc(L, LUA_GCISRUNNING, 0)) return;
  int kb = lua_gc(L, LUA_GCCOUNT, 0);
  if (kb < *base_kb + IDLE_GC_KB) {
    if (kb < *base_kb) *base_kb = kb;          /* a cycle during the task freed some */
    return;
  }
  /* A task queued while the last one ran is taken first; one pushed from
  ** now on bumps seq (under the lock, as here). */
  pthread_mutex_lock(&p->lock);
  int busy = p->len > 0 || p->closed;
  uint32_t seen = atomic_load_explicit(&p->seq, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  if (busy) return;
  for (;;) {
    /* Relaxed: a hint to stop early; take() reads the queue under the lock. */
    if (atomic_load_explicit(&p->seq, memory_order_relaxed) != seen) return;
    if (lua_gc(L, LUA_GCSTEP, IDLE_GC_STEP_KB)) break;      /* the cycle ended */
  }
  *base_kb = lua_gc(L, LUA_GCCOUNT, 0);
}

typedef struct start_arg {
  ffipar_pool *p;
  ffipar_thread *init;
} start_arg;

static void *worker_main(void *arg)
{
  start_arg a = *(start_arg *)arg;
  free(arg);
  ffipar_pool *p = a.p;
  mine = p;
  arena mem = { 0 };
  struct lua_State *L = state_new(&mem);
  if (L) state_set_paths(L, p->path, p->cpath);    /* once: tasks keep them */
  if (a.init) thread_run(L, a.init);
  ffipar_thread *t;
  int base_kb = L ? lua_gc(L, LUA_GCCOUNT, 0) : 0;
  while ((t = take(p)) != NULL) {
    thread_run(L, t);
    if (L) collect_while_idle(p, L, &base_kb);
  }
  if (L) lua_close(L);
  state_free(&mem);
  atomic_fetch_add(&p->exited, 1);
  futex_wake(&p->exited, 0x7fffffff);
  ffipar_obj_release(p);
  return NULL;
}

int ffipar_pool_start(ffipar_pool *p, ffipar_msg *init, ffipar_thread **init_out)
{
  start_arg *a = malloc(sizeof(*a));
  if (!a) { ffipar_msg_free(init); return FFIPAR_ENOMEM; }
  a->p = p;
  a->init = NULL;
  if (init) {
    a->init = thread_alloc(init, NULL, NULL, 0);
    if (!a->init) { free(a); return FFIPAR_ENOMEM; }
  }
  ffipar_obj_retain(p);                       /* the worker's */
  ffipar_thread *init_t = a->init;
  int rc = os_thread_start(worker_main, a);
  if (rc != 0) {
    if (init_t) { ffipar_obj_release(init_t); ffipar_obj_release(init_t); }
    free(a);
    ffipar_obj_release(p);
    return rc;
  }
  pthread_mutex_lock(&p->lock);
  p->started++;
  pthread_mutex_unlock(&p->lock);
  if (init_t) *init_out = init_t;
  return FFIPAR_OK;
}

int ffipar_pool_submit(ffipar_pool *p, ffipar_msg *payload, ffipar_thread **out)
{
  pthread_mutex_lock(&p->lock);
  int closed = p->closed;
  pthread_mutex_unlock(&p->lock);
  if (closed) { ffipar_msg_free(payload); return FFIPAR_ECLOSED; }
  ffipar_thread *t = thread_alloc(payload, NULL, NULL, 1);
  if (!t) return FFIPAR_ENOMEM;
  pthread_mutex_lock(&p->lock);
  if (p->closed) {
    pthread_mutex_unlock(&p->lock);
    ffipar_obj_release(t);
    ffipar_obj_release(t);
    return FFIPAR_ECLOSED;
  }
  if (p->len == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 64;
    ffipar_thread **q = malloc(cap * sizeof(*q));
    if (!q) {
      pthread_mutex_unlock(&p->lock);
      ffipar_obj_release(t);
      ffipar_obj_release(t);
      return FFIPAR_ENOMEM;
    }
    for (size_t i = 0; i < p->len; i++) q[i] = p->q[(p->head + i) % p->cap];
    free(p->q);
    p->q = q;
    p->cap = cap;
    p->head = 0;
  }
  p->q[(p->head + p->len) % p->cap] = t;       /* the queue holds the worker's ref */
  p->len++;
  atomic_fetch_add_explicit(&p->seq, 1, memory_order_relaxed); /* under the lock */
  /* Each spinning worker will see the push and take one task; a sleeper is
  ** woken for any task beyond those. (Waking none while anyone spun left the
  ** second of two quick submits to the spinner, after its first task.) */
  int wake = p->sleeping > 0 && (int)p->len > atomic_load(&p->spinning);
  pthread_mutex_unlock(&p->lock);
  if (wake) futex_wake(&p->seq, 1);
  *out = t;
  return FFIPAR_OK;
}

/* Releases are serialized by the pool's lock, so the one that leaves only
** the workers' references (one per started worker: they exit only once the
** pool is closed) sees it and closes the pool. Handles, messages in flight
** and tasks' handles all count as users. After the unlock we touch p only
** when ours was the last reference. */
void pool_release(ffipar_obj *o)
{
  ffipar_pool *p = (ffipar_pool *)o;
  pthread_mutex_lock(&p->lock);
  /* acq_rel as in ffipar_obj_release. */
  int64_t left = atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) - 1;
  if (left > 0 && left == p->started && !p->closed) {
    p->closed = 1;
    atomic_fetch_add_explicit(&p->seq, 1, memory_order_relaxed);
    /* Under the lock: an exiting worker's release waits for it, so p is
    ** still there. */
    futex_wake(&p->seq, 0x7fffffff);
  }
  pthread_mutex_unlock(&p->lock);
  if (left == 0) obj_destroy(o);
}

int ffipar_pool_mine(const ffipar_pool *p)
{
  return mine == p;
}

int ffipar_pool_closed(ffipar_pool *p)
{
  pthread_mutex_lock(&p->lock);
  int closed = p->closed;
  pthread_mutex_unlock(&p->lock);
  return closed;
}

void ffipar_pool_close(ffipar_pool *p)
{
  pthread_mutex_lock(&p->lock);
  p->closed = 1;
  atomic_fetch_add_explicit(&p->seq, 1, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  futex_wake(&p->seq, 0x7fffffff);
}

int ffipar_pool_wait(ffipar_pool *p, double timeout)
{
  int64_t deadline = deadline_of(timeout);
  pthread_mutex_lock(&p->lock);
  uint32_t started = (uint32_t)p->started;
  pthread_mutex_unlock(&p->lock);
  for (;;) {
    uint32_t n = atomic_load(&p->exited);
    if (n >= started) return FFIPAR_OK;
    int rc = futex_wait(&p->exited, n, deadline);
    if (rc != FFIPAR_OK) return atomic_load(&p->exited) >= started ? FFIPAR_OK : rc;
  }
}

int ffipar_pool_queued(ffipar_pool *p)
{
  pthread_mutex_lock(&p->lock);
  int n = (int)p->len;
  pthread_mutex_unlock(&p->lock);
  return n;
}

double ffipar_pool_claim(int64_t *job, double step, double n)
{
  _Atomic int64_t *next = (_Atomic int64_t *)job, *abort = next + 1;
  /* Seq_cst: cheap next to a chunk of work, and an abort seen here means
  ** the failing chunk's error is already recorded. */
  if (atomic_load(abort)) return -1;
  int64_t lo = atomic_fetch_add(next, (int64_t)step);
  return lo < (int64_t)n ? (double)lo : -1;
}

void ffipar_pool_abort(int64_t *job)
{
  atomic_store((_Atomic int64_t *)job + 1, 1);
}
