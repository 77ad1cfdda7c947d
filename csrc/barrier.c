/*
** barrier.c -- par.barrier: one 32-bit futex word holds the round number
** (high 16 bits) and how many have arrived in it (low 16 bits), so that
** arriving, completing a round and withdrawing after a timeout are each a
** single CAS and can never be confused with one another.
*/
#include "shim.h"

struct ffipar_barrier {
  ffipar_obj hdr;
  _Alignas(64) _Atomic uint32_t state;   /* round << 16 | arrived */
  uint32_t n;                            /* set before the object is shared */
};

#define ARRIVED(s) ((s) & 0xffffu)
#define ROUND(s)   ((s) >> 16)

static void barrier_destroy(ffipar_obj *o)
{
  free(o);
}

int ffipar_barrier_new(ffipar_barrier **out, int n)
{
  if (n < 1 || n > 0xffff) return FFIPAR_EINVAL;
  ffipar_barrier *b = cache_alloc(sizeof(*b));
  if (!b) return FFIPAR_ENOMEM;
  obj_init(&b->hdr, FFIPAR_KBARRIER, barrier_destroy);
  b->n = (uint32_t)n;
  *out = b;
  return FFIPAR_OK;
}

int ffipar_barrier_count(const ffipar_barrier *b)
{
  return (int)b->n;
}

int ffipar_barrier_wait(ffipar_barrier *b, double timeout)
{
  uint32_t s = atomic_load(&b->state);
  for (;;) {
    if (ARRIVED(s) + 1 == b->n) {
      /* The last to arrive: open the next round with nobody in it. */
      if (atomic_compare_exchange_weak(&b->state, &s, ((ROUND(s) + 1) & 0xffffu) << 16)) {
        futex_wake(&b->state, 0x7fffffff);
        return 1;
      }
    } else if (atomic_compare_exchange_weak(&b->state, &s, s + 1)) {
      break;
    }
  }
  uint32_t round = ROUND(s);
  int64_t deadline = deadline_of(timeout);
  for (;;) {
    uint32_t cur = atomic_load(&b->state);
    if (ROUND(cur) != round) return 0;
    /* Any arrival changes the word and wakes us early; we look again. */
    int rc = futex_wait(&b->state, cur, deadline);
    if (rc == FFIPAR_OK) continue;
    /* Withdraw from the round, unless it completed meanwhile. */
    cur = atomic_load(&b->state);
    for (;;) {
      if (ROUND(cur) != round) return 0;
      if (atomic_compare_exchange_weak(&b->state, &cur, cur - 1)) return rc;
    }
  }
}
