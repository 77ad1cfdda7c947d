/*
** cond.c -- par.cond: a condition variable as a futex sequence number. A
** waiter reads the number while it still holds the mutex, then sleeps only
** if no signal has changed it since, so a signal sent after the waiter let
** go of the mutex is never lost. Wakes may be spurious (callers loop).
*/
#include "shim.h"

/* Defined in mutex.c. */
int  mutex_release_if_held(ffipar_mutex *m, int me);
void mutex_relock(ffipar_mutex *m, int me);

struct ffipar_cond {
  ffipar_obj hdr;
  _Alignas(64) _Atomic uint32_t seq;
  _Atomic uint32_t waiters;    /* lets signal skip the system call */
};

static void cond_destroy(ffipar_obj *o)
{
  free(o);
}

int ffipar_cond_new(ffipar_cond **out)
{
  ffipar_cond *c = cache_alloc(sizeof(*c));
  if (!c) return FFIPAR_ENOMEM;
  obj_init(&c->hdr, FFIPAR_KCOND, cond_destroy);
  *out = c;
  return FFIPAR_OK;
}

int ffipar_cond_wait(ffipar_cond *c, ffipar_mutex *m, int me, double timeout)
{
  int64_t deadline = deadline_of(timeout);
  uint32_t seq = atomic_load(&c->seq);
  /* seq_cst on waiters and seq (here and in signal): either the signaller
  ** sees our count, or we see its new sequence number and do not sleep. */
  atomic_fetch_add(&c->waiters, 1);
  if (mutex_release_if_held(m, me) != FFIPAR_OK) {
    atomic_fetch_sub(&c->waiters, 1);
    return FFIPAR_EPERM;
  }
  /* futex_wait also returns early for its own reasons (a worker re-checks
  ** for cancellation every 50 ms): sleep again until a signal came. */
  int rc;
  do rc = futex_wait(&c->seq, seq, deadline);
  while (rc == FFIPAR_OK && atomic_load(&c->seq) == seq);
  atomic_fetch_sub(&c->waiters, 1);
  /* Giving up after a signal arrived may have swallowed the wake meant for
  ** another waiter: pass one on (a spurious wake at worst). */
  if (rc != FFIPAR_OK && atomic_load(&c->seq) != seq) ffipar_cond_signal(c);
  mutex_relock(m, me);
  return rc;
}

void ffipar_cond_signal(ffipar_cond *c)
{
  atomic_fetch_add(&c->seq, 1);
  if (atomic_load(&c->waiters) > 0) futex_wake(&c->seq, 1);
}

void ffipar_cond_broadcast(ffipar_cond *c)
{
  atomic_fetch_add(&c->seq, 1);
  if (atomic_load(&c->waiters) > 0) futex_wake(&c->seq, 0x7fffffff);
}
