/*
** shm.c -- shared memory for par.array and par.new, and the race check of
** checked arrays.
*/
#include "shim.h"

struct ffipar_shm {
  ffipar_obj hdr;
  size_t size;
  void *data;
};

static void shm_destroy(ffipar_obj *o)
{
  ffipar_shm *s = (ffipar_shm *)o;
  free(s->data);
  free(s);
}

int ffipar_shm_new(ffipar_shm **out, size_t size)
{
  ffipar_shm *s = malloc(sizeof(*s));
  if (!s) return FFIPAR_ENOMEM;
  s->data = cache_alloc(size);
  if (!s->data) { free(s); return FFIPAR_ENOMEM; }
  obj_init(&s->hdr, FFIPAR_KSHM, shm_destroy);
  s->size = size;
  *out = s;
  return FFIPAR_OK;
}

void *ffipar_shm_data(const ffipar_shm *s)
{
  return s->data;
}

size_t ffipar_shm_size(const ffipar_shm *s)
{
  return s->size;
}

/* The current phase. Seq_cst: a phase begins before the workers that run it
** are told to start, and they must see the new number. */
static _Atomic int phase;
static _Atomic int phase_seq;

int ffipar_phase_begin(void)
{
  int p = atomic_fetch_add(&phase_seq, 1) + 1;
  atomic_store(&phase, p);
  return p;
}

void ffipar_phase_end(void)
{
  atomic_store(&phase, 0);
}

int ffipar_phase_current(void)
{
  return atomic_load(&phase);
}

/* A mark is (phase << 32) | (thread id + 1). The exchange makes two writers
** of one slot in one phase see each other: whichever comes second gets the
** first one's mark back. */
int ffipar_race_mark(void *marks, int64_t i)
{
  int p = atomic_load(&phase);
  if (!p) return 0;
  uint64_t me = ((uint64_t)(uint32_t)p << 32) | (uint32_t)(ffipar_self_id() + 1);
  _Atomic uint64_t *m = (_Atomic uint64_t *)marks + i;
  uint64_t old = atomic_exchange_explicit(m, me, memory_order_relaxed);
  if ((uint32_t)(old >> 32) == (uint32_t)p && old != me)
    return (int)(uint32_t)old;
  return 0;
}
