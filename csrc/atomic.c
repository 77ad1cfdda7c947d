/*
** atomic.c -- par.atomic (a shared int64_t object) and par.atomics (the
** same operations on int32_t, int64_t and double cells of shared memory).
** Every operation is sequentially consistent. Results are doubles, so that
** the Lua side gets plain numbers and its hot loops never allocate.
*/
#include "shim.h"

struct ffipar_atomic {
  ffipar_obj hdr;
  _Alignas(64) _Atomic int64_t v;        /* alone on its cache line */
};

static void atomic_destroy(ffipar_obj *o)
{
  free(o);
}

int ffipar_atomic_new(ffipar_atomic **out, int64_t init)
{
  ffipar_atomic *a = cache_alloc(sizeof(*a));
  if (!a) return FFIPAR_ENOMEM;
  obj_init(&a->hdr, FFIPAR_KATOMIC, atomic_destroy);
  atomic_init(&a->v, init);
  *out = a;
  return FFIPAR_OK;
}

double ffipar_atomic_load(const ffipar_atomic *a)
{
  return (double)atomic_load(&((ffipar_atomic *)a)->v);
}

int64_t ffipar_atomic_load64(const ffipar_atomic *a)
{
  return atomic_load(&((ffipar_atomic *)a)->v);
}

void ffipar_atomic_store(ffipar_atomic *a, int64_t v)
{
  atomic_store(&a->v, v);
}

/* Wrap around like the hardware does (no signed-overflow UB). */
double ffipar_atomic_add(ffipar_atomic *a, int64_t v)
{
  return (double)atomic_fetch_add(&a->v, v);
}

double ffipar_atomic_sub(ffipar_atomic *a, int64_t v)
{
  return (double)atomic_fetch_sub(&a->v, v);
}

double ffipar_atomic_exchange(ffipar_atomic *a, int64_t v)
{
  return (double)atomic_exchange(&a->v, v);
}

int ffipar_atomic_cas(ffipar_atomic *a, int64_t expected, int64_t desired)
{
  return atomic_compare_exchange_strong(&a->v, &expected, desired);
}

/* ---- par.atomics: plain (non-_Atomic) cells of shared memory, so the
** __atomic builtins, which are made for ordinary objects. ---- */

#define SC __ATOMIC_SEQ_CST

double ffipar_atomics_load_i32(int32_t *p) { return __atomic_load_n(p, SC); }
void   ffipar_atomics_store_i32(int32_t *p, int32_t v) { __atomic_store_n(p, v, SC); }
double ffipar_atomics_exchange_i32(int32_t *p, int32_t v) { return __atomic_exchange_n(p, v, SC); }

/* Through uint32_t: wraps on overflow, as the hardware does. */
double ffipar_atomics_add_i32(int32_t *p, int32_t v)
{
  return (int32_t)__atomic_fetch_add((uint32_t *)p, (uint32_t)v, SC);
}

int ffipar_atomics_cas_i32(int32_t *p, int32_t expected, int32_t desired)
{
  return __atomic_compare_exchange_n(p, &expected, desired, 0, SC, SC);
}

double ffipar_atomics_load_i64(int64_t *p) { return (double)__atomic_load_n(p, SC); }
void   ffipar_atomics_store_i64(int64_t *p, int64_t v) { __atomic_store_n(p, v, SC); }
double ffipar_atomics_exchange_i64(int64_t *p, int64_t v) { return (double)__atomic_exchange_n(p, v, SC); }

double ffipar_atomics_add_i64(int64_t *p, int64_t v)
{
  return (double)(int64_t)__atomic_fetch_add((uint64_t *)p, (uint64_t)v, SC);
}

int ffipar_atomics_cas_i64(int64_t *p, int64_t expected, int64_t desired)
{
  return __atomic_compare_exchange_n(p, &expected, desired, 0, SC, SC);
}

/* Doubles move as their 64-bit patterns. */
static inline uint64_t bits_of(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
static inline double double_of(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

double ffipar_atomics_load_f64(double *p)
{
  return double_of(__atomic_load_n((uint64_t *)p, SC));
}

void ffipar_atomics_store_f64(double *p, double v)
{
  __atomic_store_n((uint64_t *)p, bits_of(v), SC);
}

double ffipar_atomics_exchange_f64(double *p, double v)
{
  return double_of(__atomic_exchange_n((uint64_t *)p, bits_of(v), SC));
}

double ffipar_atomics_add_f64(double *p, double v)
{
  uint64_t old = __atomic_load_n((uint64_t *)p, SC);
  while (!__atomic_compare_exchange_n((uint64_t *)p, &old, bits_of(double_of(old) + v),
                                      1, SC, SC))
    ;
  return double_of(old);
}

int ffipar_atomics_cas_f64(double *p, double expected, double desired)
{
  uint64_t e = bits_of(expected);
  return __atomic_compare_exchange_n((uint64_t *)p, &e, bits_of(desired), 0, SC, SC);
}
