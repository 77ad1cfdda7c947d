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
  if (p == 0) p = atomic_fetch_add(&phase_seq, 1) + 1;   /* 0 is "no phase" */
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

/* The strands of the current phase: ranges of numbers, each with the text
** that names it in race messages. Only touched when strands are numbered
** (once per parallel call, task or spawn in a phase) and when a race is
** described, so one mutex is enough. */
struct strand_range {
  int64_t base, count, chunk, n;
  char *what;
};
static pthread_mutex_t strands_lock = PTHREAD_MUTEX_INITIALIZER;
static struct strand_range *ranges;
static size_t nranges, cap_ranges;
static int ranges_phase;
static int64_t next_strand;

#define STRAND_MAX 0xFFFFFFFFLL       /* a strand is the low 32 bits of a mark */

int64_t ffipar_strand_new(int64_t count, int64_t chunk, int64_t n, const char *what, size_t len)
{
  int p = atomic_load(&phase);
  if (!p || count <= 0) return 0;
  char *text = malloc(len + 1);
  if (!text) return 0;
  memcpy(text, what, len);
  text[len] = '\0';
  int64_t base = 0;
  pthread_mutex_lock(&strands_lock);
  if (ranges_phase != p) {            /* the first strands of a new phase */
    for (size_t k = 0; k < nranges; k++) free(ranges[k].what);
    nranges = 0;
    next_strand = 1;
    ranges_phase = p;
  }
  if (nranges == cap_ranges) {
    size_t cap = cap_ranges ? 2 * cap_ranges : 16;
    struct strand_range *r = realloc(ranges, cap * sizeof(*r));
    if (r) { ranges = r; cap_ranges = cap; }
  }
  if (nranges < cap_ranges && next_strand + count - 1 <= STRAND_MAX) {
    base = next_strand;
    next_strand += count;
    ranges[nranges++] = (struct strand_range){ base, count, chunk, n, text };
    text = NULL;
  }
  pthread_mutex_unlock(&strands_lock);
  free(text);
  return base;
}

int ffipar_strand_describe(int64_t p, int64_t id, char *buf, size_t cap,
                           int64_t *k, int64_t *chunk, int64_t *n)
{
  int rc = -1;
  pthread_mutex_lock(&strands_lock);
  if (ranges_phase == (int)p && nranges > 0) {
    size_t lo = 0, hi = nranges;      /* bases increase: the last range with base <= id */
    while (hi - lo > 1) {
      size_t mid = lo + (hi - lo) / 2;
      if (ranges[mid].base <= id) lo = mid; else hi = mid;
    }
    struct strand_range *r = &ranges[lo];
    if (id >= r->base && id < r->base + r->count && cap > 0) {
      size_t len = strlen(r->what);
      if (len > cap - 1) len = cap - 1;
      memcpy(buf, r->what, len);
      buf[len] = '\0';
      *k = id - r->base;
      *chunk = r->chunk;
      *n = r->n;
      rc = 0;
    }
  }
  pthread_mutex_unlock(&strands_lock);
  return rc;
}

/* Marks. Each slot has three words: [0] its writer, [1] and [2] two
** different readers, each (phase << 32) | strand, and a word from an
** earlier phase counts as empty. Words only change from empty to a strand
** within a phase, so a strand that finds itself recorded has nothing to
** add and returns at once (its accesses are seen by whoever comes later). Two distinct readers are enough: any writer differs from
** one of them.
**
** A reader records itself and then loads the writer; a writer records
** itself and then loads the readers. Every access is seq_cst, so of a read
** and a write of one slot by two strands at least one sees the other's
** record (the store-then-load pattern of Dekker's algorithm), whatever the
** interleaving. */
#define PHASE_OF(m) ((uint32_t)((m) >> 32))
#define STRAND_OF(m) ((int64_t)(uint32_t)(m))

/* -1: w is from an earlier phase (free to take), 0: from phase p, 1: from
** a later phase (the caller is a strand that outlived its phase). */
static int age(uint64_t w, uint32_t p)
{
  int32_t d = (int32_t)(PHASE_OF(w) - p);
  return d < 0 ? -1 : d > 0;
}

int64_t ffipar_race_read(uint64_t *marks, int64_t i, uint64_t me)
{
  _Atomic uint64_t *m = (_Atomic uint64_t *)marks + 3 * i;
  uint32_t p = PHASE_OF(me);
  /* Already recorded (the common case): nothing to add, nothing to check.
  ** Relaxed: the words of this strand were stored by this thread. */
  if (atomic_load_explicit(&m[0], memory_order_relaxed) == me
      || atomic_load_explicit(&m[1], memory_order_relaxed) == me
      || atomic_load_explicit(&m[2], memory_order_relaxed) == me)
    return 0;
  for (int k = 1; k <= 2; k++) {
    uint64_t old = atomic_load(&m[k]);
    int a;
    while ((a = age(old, p)) < 0 && !atomic_compare_exchange_weak(&m[k], &old, me))
      ;
    if (a < 0 || old == me || a > 0) break;     /* recorded (or too late to matter) */
  }
  uint64_t w = atomic_load(&m[0]);
  if (PHASE_OF(w) == p && w != me) return STRAND_OF(w);
  return 0;
}

int64_t ffipar_race_write(uint64_t *marks, int64_t i, uint64_t me)
{
  _Atomic uint64_t *m = (_Atomic uint64_t *)marks + 3 * i;
  uint32_t p = PHASE_OF(me);
  if (atomic_load_explicit(&m[0], memory_order_relaxed) == me) return 0;  /* as in race_read */
  uint64_t old = atomic_load(&m[0]);
  int a;
  while ((a = age(old, p)) < 0 && !atomic_compare_exchange_weak(&m[0], &old, me))
    ;
  if (a > 0) return 0;
  if (a == 0 && old != me) return STRAND_OF(old);
  for (int k = 1; k <= 2; k++) {
    uint64_t r = atomic_load(&m[k]);
    if (PHASE_OF(r) == p && r != me) return -STRAND_OF(r);
  }
  return 0;
}

/* Check mode: read by every par.array and parallel call, set rarely. */
static _Atomic int check_mode = -1;

int ffipar_check_get(void)
{
  return atomic_load_explicit(&check_mode, memory_order_relaxed);   /* a setting, orders nothing */
}

void ffipar_check_set(int on)
{
  atomic_store(&check_mode, on ? 1 : 0);
}

static _Atomic int checked_arrays;

int ffipar_check_arrays(int add)
{
  /* Relaxed: a flag that only turns on; a strand started before it did
  ** cannot reach an array made after (see ffipar.check). */
  if (add) atomic_store_explicit(&checked_arrays, 1, memory_order_relaxed);
  return atomic_load_explicit(&checked_arrays, memory_order_relaxed);
}
