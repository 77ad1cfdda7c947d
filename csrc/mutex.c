/*
** mutex.c -- par.mutex: a futex mutex with three states (0 free, 1 locked,
** 2 locked and someone may sleep), after Drepper's "Futexes Are Tricky".
** Unlock makes a system call only in state 2. The holder's id is kept so
** that unlocking a mutex one does not hold is an error, not corruption.
*/
#include "shim.h"
#include <sched.h>

struct ffipar_mutex {
  ffipar_obj hdr;
  /* state and owner share one cache line: both move with the lock. */
  _Alignas(64) _Atomic uint32_t state;
  _Atomic int owner;           /* ffipar_self_id() + 1 of the holder, 0 free */
};

static void mutex_destroy(ffipar_obj *o)
{
  free(o);
}

int ffipar_mutex_new(ffipar_mutex **out)
{
  ffipar_mutex *m = cache_alloc(sizeof(*m));
  if (!m) return FFIPAR_ENOMEM;
  obj_init(&m->hdr, FFIPAR_KMUTEX, mutex_destroy);
  *out = m;
  return FFIPAR_OK;
}

/* The owner field is only read by the thread asking "do I hold it?", and
** only written by the holder (set after acquiring, cleared before
** releasing). By coherence of a single location a thread always sees its
** own last write or a later one, so relaxed order answers that question
** exactly: it never sees its own id unless it holds the lock. */
static inline int held_by(const ffipar_mutex *m, int me)
{
  return atomic_load_explicit(&m->owner, memory_order_relaxed) == me;
}

/* The contended path. `cancellable` is 0 only for a cond wait taking its
** mutex back, which must succeed even in a cancelled worker. */
static int lock_slow(ffipar_mutex *m, int me, double timeout, int cancellable)
{
  if (held_by(m, me)) return FFIPAR_EBUSY;
  /* No spinning: with 2 threads on 2 shared cores, `make bench` measured
  ** spins of 16 to 100 rounds slower than none (the spinner's reads and
  ** early grabs bounce the cache line away from a holder that would have
  ** gone on; a sleeping waiter costs the holder one wake per unlock). */
  int64_t deadline = cancellable ? deadline_of(timeout) : -1;
  if (deadline == 0) return FFIPAR_ETIMEOUT;   /* a poll: the CAS failed */
  /* From here on the state says 2 while we may sleep, so that the holder's
  ** unlock wakes someone. */
  while (atomic_exchange(&m->state, 2) != 0) {
    int rc = futex_wait(&m->state, 2, deadline);
    if (rc == FFIPAR_OK) continue;
    if (!cancellable && rc == FFIPAR_ECANCELLED) { sched_yield(); continue; }
    /* We may have taken the wake an unlock meant for another sleeper:
    ** hand it on (a spurious wake costs that sleeper one more exchange). */
    futex_wake(&m->state, 1);
    return rc;
  }
  return FFIPAR_OK;
}

static inline int lock_as(ffipar_mutex *m, int me, double timeout, int cancellable)
{
  uint32_t z = 0;
  if (!atomic_compare_exchange_strong(&m->state, &z, 1)) {
    int rc = lock_slow(m, me, timeout, cancellable);
    if (rc != FFIPAR_OK) return rc;
  }
  atomic_store_explicit(&m->owner, me, memory_order_relaxed);
  return FFIPAR_OK;
}

int ffipar_mutex_lock(ffipar_mutex *m, int self, double timeout)
{
  if (self <= 0) return FFIPAR_EINVAL;     /* 0 would read as "free" */
  return lock_as(m, self, timeout, 1);
}

int ffipar_mutex_trylock(ffipar_mutex *m, int self)
{
  if (self <= 0) return FFIPAR_EINVAL;
  uint32_t z = 0;
  if (!atomic_compare_exchange_strong(&m->state, &z, 1)) return 0;
  atomic_store_explicit(&m->owner, self, memory_order_relaxed);
  return 1;
}

static inline void unlock_held(ffipar_mutex *m)
{
  atomic_store_explicit(&m->owner, 0, memory_order_relaxed);
  if (atomic_exchange(&m->state, 0) == 2) futex_wake(&m->state, 1);
}

int ffipar_mutex_unlock(ffipar_mutex *m, int self)
{
  if (self <= 0) return FFIPAR_EINVAL;
  if (!held_by(m, self)) return FFIPAR_EPERM;
  unlock_held(m);
  return FFIPAR_OK;
}

int ffipar_mutex_owner(const ffipar_mutex *m)
{
  if (atomic_load(&m->state) == 0) return -1;
  return atomic_load_explicit(&m->owner, memory_order_relaxed) - 1;
}

/* For cond.c: release a mutex the caller holds, and take it back. */
int mutex_release_if_held(ffipar_mutex *m, int me)
{
  if (me <= 0 || !held_by(m, me)) return FFIPAR_EPERM;
  unlock_held(m);
  return FFIPAR_OK;
}

void mutex_relock(ffipar_mutex *m, int me)
{
  lock_as(m, me, -1, 0);
}
