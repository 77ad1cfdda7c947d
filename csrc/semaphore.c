/*
** semaphore.c -- par.semaphore: the count is the futex word; a waiter count
** lets release skip the system call when nobody sleeps.
*/
#include "shim.h"

#define SEM_MAX 0x7fffffffu

struct ffipar_semaphore {
  ffipar_obj hdr;
  _Alignas(64) _Atomic uint32_t count;
  _Atomic uint32_t waiters;
};

static void semaphore_destroy(ffipar_obj *o)
{
  free(o);
}

int ffipar_semaphore_new(ffipar_semaphore **out, int64_t n)
{
  if (n < 0 || n > (int64_t)SEM_MAX) return FFIPAR_EINVAL;
  ffipar_semaphore *s = cache_alloc(sizeof(*s));
  if (!s) return FFIPAR_ENOMEM;
  obj_init(&s->hdr, FFIPAR_KSEMAPHORE, semaphore_destroy);
  atomic_init(&s->count, (uint32_t)n);
  *out = s;
  return FFIPAR_OK;
}

int ffipar_semaphore_acquire(ffipar_semaphore *s, double timeout)
{
  int64_t deadline = 0;
  int first = 1;
  for (;;) {
    uint32_t c = atomic_load(&s->count);
    while (c > 0)
      if (atomic_compare_exchange_weak(&s->count, &c, c - 1)) return FFIPAR_OK;
    if (first) { deadline = deadline_of(timeout); first = 0; }
    /* seq_cst on waiters and count (here and in release): either release
    ** sees our count, or the futex sees its new count and does not sleep. */
    atomic_fetch_add(&s->waiters, 1);
    int rc = futex_wait(&s->count, 0, deadline);
    atomic_fetch_sub(&s->waiters, 1);
    if (rc != FFIPAR_OK) {
      /* We may have swallowed a wake meant for another waiter: pass it on. */
      if (atomic_load(&s->count) > 0 && atomic_load(&s->waiters) > 0)
        futex_wake(&s->count, 1);
      return rc;
    }
  }
}

int ffipar_semaphore_release(ffipar_semaphore *s, int64_t k)
{
  if (k < 1 || k > (int64_t)SEM_MAX) return FFIPAR_EINVAL;
  uint32_t c = atomic_load(&s->count);
  do {
    if ((int64_t)c + k > (int64_t)SEM_MAX) return FFIPAR_EINVAL;
  } while (!atomic_compare_exchange_weak(&s->count, &c, c + (uint32_t)k));
  if (atomic_load(&s->waiters) > 0) futex_wake(&s->count, (int)k);
  return FFIPAR_OK;
}

int64_t ffipar_semaphore_count(const ffipar_semaphore *s)
{
  return atomic_load(&s->count);
}
