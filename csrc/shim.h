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

/* The calling thread's cancel state, for blocking calls that must notice it
** before they sleep. */
int  self_cancelled(void);

#endif
