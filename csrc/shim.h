/*
** shim.h -- private to the C shim: includes, the object header and the
** helpers every concept file shares. Every .c file includes only this.
*/
#ifndef FFIPAR_SHIM_H
#define FFIPAR_SHIM_H

#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "ffipar.h"

/* The header of every shared object. `refs` needs no ordering on retain
** (the retaining thread already holds a reference); release is acq_rel so
** that the thread that frees sees every write made through other refs. */
typedef struct ffipar_obj {
  _Atomic int64_t refs;
  int kind;
  void (*destroy)(struct ffipar_obj *o);
} ffipar_obj;

void obj_init(ffipar_obj *o, int kind, void (*destroy)(ffipar_obj *));
/* After the last reference: count it gone and destroy it. */
void obj_destroy(ffipar_obj *o);
/* pool.c: a pool's release (ffipar_obj_release calls it): a pool that only
** its own workers still hold is closed, so that its workers exit. */
void pool_release(ffipar_obj *o);

/* Memory aligned to a cache line (64 bytes), zeroed. */
void *cache_alloc(size_t size);

/* Absolute deadline in ns of CLOCK_MONOTONIC for a timeout in seconds:
** -1 for "forever" (timeout < 0), 0 for "poll" (timeout == 0). */
int64_t deadline_of(double timeout);
int64_t now_ns(void);

/* Futex wait: sleeps while *addr == expected, until woken, the deadline, or
** the calling worker's cancellation. Returns FFIPAR_OK (woken or value
** changed; callers re-check their condition), _ETIMEOUT or _ECANCELLED.
** Deadline 0 returns _ETIMEOUT at once. */
int  futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline);
void futex_wake(_Atomic uint32_t *addr, int n);

/* One pause in a spin loop (lets the sibling hyperthread run). */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Spin for up to `ns` nanoseconds while *addr == value (a pause per probe).
** Returns 1 once it differs, 0 when the time is up. Only for waits that are
** usually short and where a core is likely free: a futex sleep and wake-up
** costs tens of microseconds in a VM. */
int  spin_while(_Atomic uint32_t *addr, uint32_t value, int64_t ns);

/* The calling thread's cancel state, for blocking calls that must notice it
** before they sleep. */
int  self_cancelled(void);

/* state.c: new worker states. Each allocates first from its runner's
** arena (kept warm across the states a runner makes). */
struct lua_State;
typedef struct arena {
  char *base;
  size_t top;
} arena;
struct lua_State *state_new(arena *a);   /* NULL when out of memory */
void state_free(arena *a);               /* once no state uses the arena */
void state_set_paths(struct lua_State *L, const char *path, const char *cpath);

/* thread.c: start fn(arg) on a detached OS thread: FFIPAR_OK, FFIPAR_EAGAIN
** (a thread or memory limit) or FFIPAR_ESYS. */
int os_thread_start(void *(*fn)(void *), void *arg);

/* thread.c: run t's function in L on the calling thread (L stays open),
** let t's joiner go, and drop the worker's reference to t. */
void thread_run(struct lua_State *L, ffipar_thread *t);
/* A thread object for a job that someone else will run: two references,
** the caller's and the one thread_run drops. package.path/cpath are set
** from path/cpath before the job runs, unless path is NULL. With `spin`, a joiner spins
** briefly before it sleeps (for jobs that usually finish in microseconds). */
ffipar_thread *thread_alloc(ffipar_msg *payload, const char *path, const char *cpath,
                            int spin);

/* fd.c: readiness descriptors (eventfds). fd_new returns -1 (errno set)
** when no descriptor can be made; fd_signal makes it readable, fd_reset
** not readable (whatever the signals so far), fd_close ignores -1. */
int  fd_new(void);
void fd_signal(int fd);
void fd_reset(int fd);
void fd_close(int fd);

/* gate.c: forget this OS thread's gate records (nesting depths, private
** color). A runner calls it after each job: the next job on the same OS
** thread is another worker, with nothing entered and a color of its own. */
void gate_forget_thread(void);

#endif
