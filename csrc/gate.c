/*
** gate.c -- the color gate: group mutual exclusion on one 64-bit word.
**
** Threads of the same color may be inside together; threads of different
** colors never are. A colorless thread uses a private color of its own, so
** it is alone inside.
**
**   state = color:47 | CLOSED:1 | count:16
**
** Enter (fast path): a CAS count+1 when the color is ours, the gate is open
** and the count is not full (first guessing "ours, open, empty", then from
** the value the failed CAS loaded). Leave: one fetch_sub. Everything else
** (another color inside, the gate closed) goes to the slow path: a FIFO of
** groups, one group per color, guarded by a small FIFO ticket lock `m`.
** Once a group waits, CLOSED stops fast entries of the color inside, so no
** color starves. The last one out of a closed gate (or whoever finds it
** drained) admits the head group: it writes (color, n) in one CAS, which
** counts every member in before any of them wakes, then bumps the group's
** futex word and wakes them all with one call. A waiter spins a little
** before it sleeps, so a short section ahead of it hands over in well under
** a microsecond instead of a scheduler wake-up.
**
** Invariants (test/gate.pml checks them): while `m` is free, the queue is
** non-empty exactly when CLOSED is set; count = threads credited inside;
** every credited thread has the word's color; the word only changes by RMW,
** so every leaver's release fetch_sub heads a release sequence that the next
** phase's acquire reaches.
*/
#include "shim.h"
#include <errno.h>
#include <limits.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

#ifndef GATE_MAXCNT
#define GATE_MAXCNT 0xFFFFu        /* a stress build may cap groups lower */
#endif
#define CNT_MASK    0xFFFFull
#define CLOSED      (1ull << 16)
#define COLOR_SHIFT 17
#define COLOR_LIMIT (1ull << 47)
#define STRING_BASE (1ull << 45)   /* integer colors are [0, 2^45) */
#define PRIVATE_BASE (1ull << 46)  /* string colors [2^45, 2^46), private above */
#define FAST_TRIES  4
#define DIRECT_TRIES 8
#define HELD_MAX    8
#define SPIN        64
#define NSHARD      16
#ifndef WAIT_SPIN
#define WAIT_SPIN   1000       /* pause loops (~30 us here, about one futex wake) */
#endif

/* GATE_MUTANT selects a deliberately broken gate for the tests of the
** stress test (test/c/gate_mutant_*.c); never defined in the shim. */
#ifndef GATE_MUTANT
#define GATE_MUTANT 0
#endif

_Static_assert(GATE_MAXCNT <= CNT_MASK && GATE_MAXCNT >= 1, "count field");

/* ---- the internal lock: a FIFO ticket lock, so the slow path is
** starvation-free as the model assumes (glibc mutexes let threads barge).
** It is held for a few dozen instructions; waiters spin briefly, then
** sleep on `serving`. Never cancellable: a cancelled waiter must still be
** able to take it to withdraw. ---- */

struct tlock {
  _Atomic uint32_t next;
  _Atomic uint32_t serving;
  _Atomic uint32_t sleepers;
};

static void tlock_acquire(struct tlock *l)
{
  /* Relaxed: the ticket only orders us; acquire comes from `serving`. */
  uint32_t me = atomic_fetch_add_explicit(&l->next, 1, memory_order_relaxed);
  for (int spin = 0;; spin++) {
    uint32_t s = atomic_load_explicit(&l->serving, memory_order_acquire);
    if (s == me) return;
    if (spin < SPIN) { cpu_relax(); continue; }
    /* seq_cst on both sides (sleepers++ then load serving here; store
    ** serving then load sleepers in release) so one of us sees the other. */
    atomic_fetch_add(&l->sleepers, 1);
    s = atomic_load(&l->serving);
    if (s != me)
      syscall(SYS_futex, (uint32_t *)&l->serving, FUTEX_WAIT | FUTEX_PRIVATE_FLAG,
              s, NULL, NULL, 0);
    atomic_fetch_sub_explicit(&l->sleepers, 1, memory_order_relaxed);
  }
}

static void tlock_release(struct tlock *l)
{
  uint32_t s = atomic_load_explicit(&l->serving, memory_order_relaxed);
  atomic_store(&l->serving, s + 1);   /* seq_cst: release + the Dekker pair */
  if (atomic_load(&l->sleepers)) futex_wake(&l->serving, INT_MAX);
}

/* ---- the gate ---- */

/* A queued group: the waiters of one color, admitted together. Groups are
** never freed before the gate (a woken member may still read `gen` after
** its group was recycled; `gen` only grows, so it still sees a change). */
struct group {
  _Atomic uint32_t gen;      /* futex word: +1 when the group is admitted */
  uint32_t n;                /* members still waiting (under m) */
  uint64_t color;
  struct group *next;        /* queue order, or the free list */
  struct group *all;         /* every group of this gate, for destroy */
};

struct ffipar_gate {
  ffipar_obj hdr;
  /* The word alone in a 128-byte block (adjacent-line prefetch pairs lines). */
  _Alignas(128) _Atomic uint64_t state;
  _Alignas(128) struct tlock m;
  struct group *head, *tail;  /* the FIFO of waiting groups (under m) */
  struct group *free, *all;   /* recycled groups, all groups (under m) */
  uint64_t waits, switches;   /* statistics (under m) */
  /* Entries, a statistic: one counter per shard of threads, each on its
  ** own line, so that threads of one color do not bounce a second line
  ** besides the state word's. Relaxed: summed only for display. */
  struct { _Alignas(64) _Atomic uint64_t n; } entries[NSHARD];
};

/* Per-thread record of the gates this thread is inside: nesting depth and
** color (a nested enter of another color would deadlock, so it is refused). */
struct held { ffipar_gate *g; uint64_t color; uint32_t depth; };
/* initial-exec: a %fs-relative access instead of a __tls_get_addr call
** per enter and leave (a third of the fast path's cost). It takes static
** TLS space, which glibc reserves a little of for dlopened libraries: keep
** this small (8 records, ~200 bytes). */
#define TLS _Thread_local __attribute__((tls_model("initial-exec")))
static TLS struct { int n; struct held h[HELD_MAX]; } held;
static TLS uint64_t private_color;
static TLS unsigned shard;                 /* this thread's entries shard + 1 */
static _Atomic unsigned next_shard;

static inline void count_entries(ffipar_gate *g, uint64_t n)
{
  if (!shard)
    shard = atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % NSHARD + 1;
  atomic_fetch_add_explicit(&g->entries[shard - 1].n, n, memory_order_relaxed);
}

static _Atomic uint64_t next_private;

void gate_forget_thread(void)
{
  held.n = 0;
  private_color = 0;
}

static void gate_destroy(ffipar_obj *o)
{
  ffipar_gate *g = (ffipar_gate *)o;
  for (struct group *p = g->all, *next; p; p = next) {
    next = p->all;
    free(p);
  }
  free(g);
}

int ffipar_gate_new(ffipar_gate **out)
{
  size_t size = (sizeof(ffipar_gate) + 127) & ~(size_t)127;
  ffipar_gate *g = aligned_alloc(128, size);
  if (!g) return FFIPAR_ENOMEM;
  memset(g, 0, size);
  obj_init(&g->hdr, FFIPAR_KGATE, gate_destroy);
  atomic_init(&g->state, 0);   /* color 0, open, empty */
  *out = g;
  return FFIPAR_OK;
}

static inline uint64_t tag_of(uint64_t color)
{
  return color << COLOR_SHIFT;
}

/* The fast path: bounded CAS tries, then the fair slow path. Acquire on
** success pairs with the release fetch_sub of the previous phase's leavers
** (and the admitter's RMW continues their release sequence). */
static inline int enter_fast(ffipar_gate *g, uint64_t tag)
{
  /* First guess: our color, open, empty (the sticky uncontended case);
  ** a failed CAS loads the real value for the checks below. */
  uint64_t s = tag;
  if (atomic_compare_exchange_weak_explicit(&g->state, &s, s + 1,
        memory_order_acquire, memory_order_relaxed))
    return 1;
  for (int i = 0; i < FAST_TRIES; i++) {
#if GATE_MUTANT == 3    /* mutant: ignores CLOSED (PyPy's check) */
    if ((s & ~(CNT_MASK | CLOSED)) != tag || (s & CNT_MASK) >= GATE_MAXCNT) return 0;
#else
    /* One test rejects another color and CLOSED; then the count limit, so
    ** the +1 can never carry into the color bits. */
    if ((s & ~CNT_MASK) != tag || (s & CNT_MASK) >= GATE_MAXCNT) return 0;
#endif
    if (atomic_compare_exchange_weak_explicit(&g->state, &s, s + 1,
          memory_order_acquire, memory_order_relaxed))
      return 1;
  }
  return 0;
}

/* Admit the head group. Requires m held, the gate CLOSED and drained
** (count 0: then nothing but a holder of m can change the word), and a
** non-empty queue. Returns the group to wake once m is released. */
static struct group *admit_head(ffipar_gate *g, uint64_t s)
{
  struct group *h = g->head;
  g->head = h->next;
  if (!g->head) g->tail = NULL;
  uint64_t next = tag_of(h->color) | h->n | (g->head ? CLOSED : 0);
  /* acq_rel: acquire the last phase (the caller's load already did), and
  ** release so that fast entries of the new color that read this value
  ** continue the chain. Cannot fail while the invariants hold. */
  int ok = atomic_compare_exchange_strong_explicit(&g->state, &s, next,
             memory_order_acq_rel, memory_order_relaxed);
  (void)ok;
  if ((s >> COLOR_SHIFT) != h->color) g->switches++;
  count_entries(g, h->n);
  /* Release: a member that sees the new gen sees the admission above. */
  atomic_fetch_add_explicit(&h->gen, 1, memory_order_release);
  h->n = 0;
  h->next = g->free;
  g->free = h;
  return h;
}

static struct group *join_group(ffipar_gate *g, uint64_t color)
{
  for (struct group *p = g->head; p; p = p->next)
    if (p->color == color && p->n < GATE_MAXCNT) return p;
  struct group *p = g->free;
  if (p) {
    g->free = p->next;
  } else {
    p = cache_alloc(sizeof(*p));
    if (!p) return NULL;
    p->all = g->all;
    g->all = p;
  }
  p->color = color;
  p->n = 0;
  p->next = NULL;
  if (g->tail) g->tail->next = p; else g->head = p;
  g->tail = p;
  return p;
}

static void unlink_group(ffipar_gate *g, struct group *grp)
{
  struct group **pp = &g->head, *prev = NULL;
  while (*pp != grp) { prev = *pp; pp = &(*pp)->next; }
  *pp = grp->next;
  if (g->tail == grp) g->tail = prev;
  grp->next = g->free;
  g->free = grp;
}

/* Out of line, so that the fast path's function stays small (no register
** spills for the slow path's needs). */
static int spin_ok(void)
{
  static _Atomic int cpus;      /* relaxed: the same value for everyone */
  int n = atomic_load_explicit(&cpus, memory_order_relaxed);
  if (!n) {
    /* The machine's CPUs, not this thread's affinity: a pinned waiter
    ** waits for a thread on another CPU. */
    n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    atomic_store_explicit(&cpus, n, memory_order_relaxed);
  }
  return n > 1;
}

__attribute__((noinline))
static int enter_slow(ffipar_gate *g, uint64_t color, double timeout)
{
  uint64_t tag = tag_of(color);
  struct group *wake = NULL;
  tlock_acquire(&g->m);
  /* A direct entry, only when nobody queues (no barging past a group). */
  for (int i = 0; i < DIRECT_TRIES && !g->head; i++) {
    uint64_t s = atomic_load_explicit(&g->state, memory_order_acquire);
    uint64_t cnt = s & CNT_MASK, next;
    if (cnt == 0)
      next = tag | 1;                               /* drained: take it */
#if GATE_MUTANT == 2    /* mutant: joins an open gate of any color */
    else if (!(s & CLOSED) && cnt < GATE_MAXCNT)
#else
    else if ((s & ~CNT_MASK) == tag && cnt < GATE_MAXCNT)
#endif
      next = s + 1;                                 /* ours and open */
    else
      break;
    if (atomic_compare_exchange_strong_explicit(&g->state, &s, next,
          memory_order_acquire, memory_order_relaxed)) {
      if (cnt == 0 && (s >> COLOR_SHIFT) != color) g->switches++;
      tlock_release(&g->m);
      count_entries(g, 1);
      return FFIPAR_OK;
    }
  }
  int64_t deadline = deadline_of(timeout);
  if (deadline == 0) { tlock_release(&g->m); return FFIPAR_ETIMEOUT; }
  if (self_cancelled()) { tlock_release(&g->m); return FFIPAR_ECANCELLED; }
  struct group *grp = join_group(g, color);
  if (!grp) { tlock_release(&g->m); return FFIPAR_ENOMEM; }
  grp->n++;
  g->waits++;
  /* Read before anything can admit this group (admission needs m). */
  uint32_t seen = atomic_load_explicit(&grp->gen, memory_order_relaxed);
  /* Close: wait-free, so a stream of fast entries cannot starve it. */
  uint64_t s = atomic_fetch_or_explicit(&g->state, CLOSED, memory_order_acq_rel) | CLOSED;
  if ((s & CNT_MASK) == 0) wake = admit_head(g, s);
  tlock_release(&g->m);
  if (wake) futex_wake(&wake->gen, INT_MAX);

  int rc = FFIPAR_OK;
  /* Spin briefly before sleeping: a short section ahead of us ends sooner
  ** than a futex sleep and wake-up (tens of us on a VM). Only with more
  ** than one CPU, where the thread we wait for can run meanwhile. */
  if (spin_ok())
    for (int i = 0; i < WAIT_SPIN; i++) {
      if (atomic_load_explicit(&grp->gen, memory_order_acquire) != seen) return FFIPAR_OK;
      cpu_relax();
    }
  /* Acquire pairs with admit_head's release bump. */
  while (atomic_load_explicit(&grp->gen, memory_order_acquire) == seen) {
    rc = futex_wait(&grp->gen, seen, deadline);
    if (rc != FFIPAR_OK) break;
  }
  if (rc == FFIPAR_OK) return FFIPAR_OK;

  /* Timed out or cancelled: withdraw, unless admitted meanwhile. */
  wake = NULL;
  tlock_acquire(&g->m);
  if (atomic_load_explicit(&grp->gen, memory_order_acquire) != seen) {
    tlock_release(&g->m);
    return FFIPAR_OK;             /* already counted in: we are inside */
  }
  if (--grp->n == 0) unlink_group(g, grp);
  if (!g->head) {
    atomic_fetch_and_explicit(&g->state, ~CLOSED, memory_order_relaxed);
  } else {
    s = atomic_load_explicit(&g->state, memory_order_acquire);
    /* Drained: a leaver is on its way to admit; do it now, sooner. */
    if ((s & CNT_MASK) == 0) wake = admit_head(g, s);
  }
  tlock_release(&g->m);
  if (wake) futex_wake(&wake->gen, INT_MAX);
  return rc;
}

static struct held *find_held(ffipar_gate *g)
{
  for (int i = held.n - 1; i >= 0; i--)
    if (held.h[i].g == g) return &held.h[i];
  return NULL;
}

int ffipar_gate_enter(ffipar_gate *g, uint64_t color, double timeout)
{
  if (color >= COLOR_LIMIT) return FFIPAR_EINVAL;
  struct held *h = find_held(g);
  if (h) {
    if (h->color != color) return FFIPAR_EBUSY;
    h->depth++;
    return FFIPAR_OK;
  }
  if (held.n == HELD_MAX) return FFIPAR_EINVAL;
  int rc = FFIPAR_OK;
  if (enter_fast(g, tag_of(color))) count_entries(g, 1);
  else rc = enter_slow(g, color, timeout);
  if (rc == FFIPAR_OK) {
    struct held *n = &held.h[held.n++];
    n->g = g;
    n->color = color;
    n->depth = 1;
  }
  return rc;
}

/* The last one out of a closed gate admits the head group, unless a
** withdrawal or a joiner that found the gate drained did it first. */
__attribute__((noinline))
static void handoff(ffipar_gate *g)
{
  struct group *wake = NULL;
  tlock_acquire(&g->m);
  uint64_t s = atomic_load_explicit(&g->state, memory_order_acquire);
  if ((s & (CLOSED | CNT_MASK)) == CLOSED && g->head) wake = admit_head(g, s);
  tlock_release(&g->m);
  if (wake) futex_wake(&wake->gen, INT_MAX);
}

int ffipar_gate_leave(ffipar_gate *g)
{
  struct held *h = find_held(g);
  if (!h) return FFIPAR_EPERM;
  if (--h->depth > 0) return FFIPAR_OK;
  *h = held.h[--held.n];
#if GATE_MUTANT == 1    /* mutant: relaxed leave */
  uint64_t old = atomic_fetch_sub_explicit(&g->state, 1, memory_order_relaxed);
#else
  /* Release: the section happens-before whoever enters next. */
  uint64_t old = atomic_fetch_sub_explicit(&g->state, 1, memory_order_release);
#endif
  /* The handoff decision comes from our own RMW's old value, on the word
  ** that waiters RMW to set CLOSED: no store-load race, no fence needed. */
  if ((old & (CLOSED | CNT_MASK)) == (CLOSED | 1)) handoff(g);
  return FFIPAR_OK;
}

int ffipar_gate_depth(const ffipar_gate *g)
{
  struct held *h = find_held((ffipar_gate *)g);
  return h ? (int)h->depth : 0;
}

double ffipar_gate_private_color(void)
{
  if (!private_color)
    private_color = PRIVATE_BASE +
      atomic_fetch_add_explicit(&next_private, 1, memory_order_relaxed);
  return (double)private_color;
}

void ffipar_gate_stats(ffipar_gate *g, int64_t *out)
{
  tlock_acquire(&g->m);
  uint64_t s = atomic_load_explicit(&g->state, memory_order_relaxed);
  int64_t waiting = 0, groups = 0;
  for (struct group *p = g->head; p; p = p->next) { waiting += p->n; groups++; }
  out[0] = 0;
  for (int i = 0; i < NSHARD; i++)
    out[0] += (int64_t)atomic_load_explicit(&g->entries[i].n, memory_order_relaxed);
  out[1] = (int64_t)g->waits;
  out[2] = (int64_t)g->switches;
  out[3] = (int64_t)(s & CNT_MASK);
  out[4] = waiting;
  out[5] = groups;
  out[6] = (s & CLOSED) ? 1 : 0;
  out[7] = (int64_t)(s >> COLOR_SHIFT);
  tlock_release(&g->m);
}

/* ---- string colors: a hash table of the strings that some thread holds
** (a reference per Lua state that cached the string, see gate.lua). A
** string keeps its color while it is held, so every thread that holds it
** agrees; once nobody does, its entry is freed. Colors are never reused
** (2^45 of them), so a thread that still has an old one inside a gate can
** never share it with another string. Only cache misses come here. ---- */

struct color {
  struct color *next;         /* the bucket's chain */
  uint64_t color;
  int64_t refs;
  size_t len;
  char s[];
};
static pthread_mutex_t colors_lock = PTHREAD_MUTEX_INITIALIZER;
static struct color **buckets;      /* nbuckets (a power of two) chains */
static size_t nbuckets, ncolors;
static uint64_t next_color;

static size_t hash(const char *s, size_t len)
{
  uint64_t h = 14695981039346656037ull;           /* FNV-1a */
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return (size_t)(h ^ (h >> 29));
}

static struct color **color_slot(const char *s, size_t len)
{
  struct color **pp = &buckets[hash(s, len) & (nbuckets - 1)];
  while (*pp && ((*pp)->len != len || memcmp((*pp)->s, s, len) != 0)) pp = &(*pp)->next;
  return pp;
}

/* One chain per color at most, on average: double when full. */
static int colors_grow(void)
{
  size_t n = nbuckets ? 2 * nbuckets : 64;
  struct color **b = calloc(n, sizeof(*b));
  if (!b) return 0;
  for (size_t i = 0; i < nbuckets; i++)
    for (struct color *c = buckets[i], *next; c; c = next) {
      next = c->next;
      size_t k = hash(c->s, c->len) & (n - 1);
      c->next = b[k];
      b[k] = c;
    }
  free(buckets);
  buckets = b;
  nbuckets = n;
  return 1;
}

double ffipar_gate_color(const char *name, size_t len)
{
  double c = (double)FFIPAR_ENOMEM;
  pthread_mutex_lock(&colors_lock);
  if (ncolors >= nbuckets && !colors_grow() && !nbuckets) goto out;
  struct color **pp = color_slot(name, len);
  if (!*pp) {
    if (next_color >= STRING_BASE) goto out;      /* 2^45 colors used: none left */
    struct color *e = malloc(sizeof(*e) + len);
    if (!e) goto out;
    memcpy(e->s, name, len);
    e->len = len;
    e->refs = 0;
    e->color = STRING_BASE + next_color++;
    e->next = NULL;
    *pp = e;
    ncolors++;
  }
  (*pp)->refs++;
  c = (double)(*pp)->color;
out:
  pthread_mutex_unlock(&colors_lock);
  return c;
}

void ffipar_gate_color_release(const char *name, size_t len)
{
  pthread_mutex_lock(&colors_lock);
  struct color **pp = nbuckets ? color_slot(name, len) : NULL;
  if (pp && *pp && --(*pp)->refs == 0) {
    struct color *e = *pp;
    *pp = e->next;
    free(e);
    ncolors--;
  }
  pthread_mutex_unlock(&colors_lock);
}

int64_t ffipar_gate_colors(void)
{
  pthread_mutex_lock(&colors_lock);
  int64_t n = (int64_t)ncolors;
  pthread_mutex_unlock(&colors_lock);
  return n;
}

int ffipar_gate_holds_color(double color)
{
  for (int i = 0; i < held.n; i++)
    if ((double)held.h[i].color == color) return 1;
  return 0;
}

/* ---- named gates: a list under one mutex, append-only (a program has a
** few; they live as long as the process). ---- */

struct name { char *s; size_t len; void *value; };
struct registry { struct name *v; size_t n, cap; };
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct registry gates;

static struct name *reg_find(struct registry *r, const char *s, size_t len)
{
  for (size_t i = 0; i < r->n; i++)
    if (r->v[i].len == len && memcmp(r->v[i].s, s, len) == 0) return &r->v[i];
  return NULL;
}

static struct name *reg_add(struct registry *r, const char *s, size_t len, void *value)
{
  if (r->n == r->cap) {
    size_t cap = r->cap ? 2 * r->cap : 16;
    struct name *v = realloc(r->v, cap * sizeof(*v));
    if (!v) return NULL;
    r->v = v;
    r->cap = cap;
  }
  char *copy = malloc(len + 1);
  if (!copy) return NULL;
  memcpy(copy, s, len);
  copy[len] = 0;
  struct name *e = &r->v[r->n++];
  e->s = copy;
  e->len = len;
  e->value = value;
  return e;
}

int ffipar_gate_named(ffipar_gate **out, const char *name, size_t len)
{
  int rc = FFIPAR_OK;
  pthread_mutex_lock(&reg_lock);
  struct name *e = reg_find(&gates, name, len);
  if (!e) {
    ffipar_gate *g;
    rc = ffipar_gate_new(&g);
    if (rc == FFIPAR_OK && !(e = reg_add(&gates, name, len, g))) {
      ffipar_obj_release(&g->hdr);
      rc = FFIPAR_ENOMEM;
    }
  }
  if (rc == FFIPAR_OK) {
    ffipar_obj_retain(e->value);   /* the registry keeps its own for ever */
    *out = e->value;
  }
  pthread_mutex_unlock(&reg_lock);
  return rc;
}
