/*
** gate_stress.h -- the stress harness of the color gate, shared by
** gate_stress.c (the real gate) and the variants that include a renamed copy
** of csrc/gate.c (gate_cap.c, gate_mutant_*.c).
**
** 10 threads: 4 of color A (an integer), 3 of color B (a string color), 3
** colorless (each its own private color). Random deadlines: try-only, 0-50
** us, forever. On every entry each thread checks the per-class occupancy
** counters: no other class inside, and a colorless thread alone. The
** counters are relaxed on purpose: they must not add happens-before edges
** of their own, or they would hide a gate that orders too weakly from TSan
** (which then sees the plain `shared` / `excl` accesses race). The gate's
** own acquire/release makes the checks sound: a section's decrement
** happens-before the next class's entry, so its load cannot see a stale
** count.
**
** Before the random phase a deterministic check: with A inside and B
** queued, a new A arrival must not get in (the gate is closed).
** Returns 0 when every check passed.
*/
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define NA 4
#define NB 3
#define NX 3
#define NT (NA + NB + NX)

enum { CA, CB, CX };

static ffipar_gate *gate;
static uint64_t color_a = 7, color_b;
static _Atomic int64_t occ[3];            /* relaxed: see the header */
static _Atomic int64_t violations, stop;
static _Atomic int64_t entries[3], timeouts, nests;
static _Atomic int64_t max_wait_ns;
static int64_t excl;                      /* plain: only colorless sections write it */
static int64_t shared_val;                /* plain: X writes, A and B read */
static _Atomic int64_t excl_entries;

static int64_t clock_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x << 13; x ^= x >> 7; x ^= x << 17;
  return *s = x;
}

#define RELAXED memory_order_relaxed
#define LOAD(x) atomic_load_explicit(&(x), RELAXED)
#define ADD(x, v) atomic_fetch_add_explicit(&(x), (v), RELAXED)

static void fail(const char *what)
{
  if (ADD(violations, 1) < 5) fprintf(stderr, "VIOLATION: %s\n", what);
}

static void check_entry(int cls)
{
  int64_t before = ADD(occ[cls], 1);
  if (cls == CX && before != 0) fail("a colorless thread is not alone");
  for (int c = 0; c < 3; c++)
    if (c != cls && LOAD(occ[c]) != 0) fail("two colors inside at once");
}

struct worker { int cls; uint64_t seed; };

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  uint64_t rnd = w->seed;
  uint64_t color = w->cls == CA ? color_a : w->cls == CB ? color_b
                 : (uint64_t)ffipar_gate_private_color();
  volatile int64_t sink = 0;
  while (!LOAD(stop)) {
    uint64_t r = xorshift(&rnd);
    double timeout;
    switch (r & 3) {
    case 0: timeout = 0; break;
    case 1: timeout = -1; break;
    default: timeout = (double)((r >> 8) % 50) * 1e-6; break;
    }
    int64_t t0 = timeout < 0 ? clock_ns() : 0;
    int rc = ffipar_gate_enter(gate, color, timeout);
    if (rc == FFIPAR_ETIMEOUT) {
      if (timeout < 0) fail("a forever wait timed out");
      ADD(timeouts, 1);
      continue;
    }
    if (rc != FFIPAR_OK) { fail("enter failed"); continue; }
    if (timeout < 0) {
      int64_t w8 = clock_ns() - t0, m = LOAD(max_wait_ns);
      while (w8 > m && !atomic_compare_exchange_weak_explicit(&max_wait_ns, &m, w8, RELAXED, RELAXED)) {}
    }
    check_entry(w->cls);
    ADD(entries[w->cls], 1);
    if (w->cls == CX) {
      excl++;
      shared_val = (int64_t)r;
      ADD(excl_entries, 1);
    } else {
      sink += shared_val;
    }
    if ((r >> 20) % 16 == 0) {             /* nest: same color, then another */
      if (ffipar_gate_enter(gate, color, 0) != FFIPAR_OK) fail("nested enter refused");
      if (ffipar_gate_depth(gate) != 2) fail("depth is not 2");
      if (ffipar_gate_enter(gate, color == color_a ? color_b : color_a, -1) != FFIPAR_EBUSY)
        fail("nested enter of another color not refused");
      ffipar_gate_leave(gate);
      ADD(nests, 1);
    }
    for (int i = (int)((r >> 32) % 200); i > 0; i--) sink += i;
    if ((r >> 40) % 64 == 0) usleep(50);
    ADD(occ[w->cls], -1);
    if (ffipar_gate_leave(gate) != FFIPAR_OK) fail("leave failed");
  }
  (void)sink;
  return NULL;
}

/* ---- the deterministic closing check ---- */

static _Atomic int b_in;

static void *b_waiter(void *arg)
{
  (void)arg;
  if (ffipar_gate_enter(gate, color_b, -1) != FFIPAR_OK) { fail("B could not enter"); return NULL; }
  atomic_store(&b_in, 1);
  ffipar_gate_leave(gate);
  return NULL;
}

static void *a_late(void *arg)
{
  int *result = arg;
  *result = ffipar_gate_enter(gate, color_a, 0);
  if (*result == FFIPAR_OK) ffipar_gate_leave(gate);
  return NULL;
}

static int wait_for(int64_t what, int index, int64_t limit_ns)
{
  int64_t stats[8], until = clock_ns() + limit_ns;
  do {
    ffipar_gate_stats(gate, stats);
    if (stats[index] == what) return 1;
    if (atomic_load(&b_in)) return 0;      /* B got in: no point waiting */
    usleep(1000);
  } while (clock_ns() < until);
  return 0;
}

static void closing_check(void)
{
  pthread_t b, late;
  int late_rc = 99;
  if (ffipar_gate_enter(gate, color_a, -1) != FFIPAR_OK) { fail("A could not enter"); return; }
  pthread_create(&b, NULL, b_waiter, NULL);
  if (!wait_for(1, 4, 5000000000LL)) fail("B did not queue (within 5 s)");
  pthread_create(&late, NULL, a_late, &late_rc);
  pthread_join(late, NULL);
  if (late_rc != FFIPAR_ETIMEOUT) fail("a new A entered a gate closed for a waiting B");
  if (atomic_load(&b_in)) fail("B entered while A was inside");
  ffipar_gate_leave(gate);
  pthread_join(b, NULL);
  if (!atomic_load(&b_in)) fail("B never entered");
}

static int stress_main(void)
{
  double seconds = getenv("GATE_STRESS_SECONDS") ? atof(getenv("GATE_STRESS_SECONDS")) : 2.0;
  if (ffipar_gate_new(&gate) != FFIPAR_OK) { fprintf(stderr, "no gate\n"); return 1; }
  color_b = (uint64_t)ffipar_gate_color("blue", 4);
  if (color_b != (uint64_t)ffipar_gate_color("blue", 4)) fail("string color changed");

  closing_check();

  pthread_t th[NT];
  struct worker ws[NT];
  for (int i = 0; i < NT; i++) {
    ws[i].cls = i < NA ? CA : i < NA + NB ? CB : CX;
    ws[i].seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
    pthread_create(&th[i], NULL, worker_main, &ws[i]);
  }
  usleep((useconds_t)(seconds * 1e6));
  atomic_store(&stop, 1);
  /* A deadlock would hang here: the join has a bound. */
  int64_t until = clock_ns() + 20000000000LL;
  for (int i = 0; i < NT; i++) {
    struct timespec ts;
    int64_t rt;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    rt = (int64_t)now.tv_sec * 1000000000LL + now.tv_nsec + (until - clock_ns());
    ts.tv_sec = rt / 1000000000LL;
    ts.tv_nsec = rt % 1000000000LL;
    if (pthread_timedjoin_np(th[i], NULL, &ts) != 0) {
      fprintf(stderr, "STUCK: thread %d did not finish within 20 s (deadlock?)\n", i);
      return 1;
    }
  }
  int64_t st[8];
  ffipar_gate_stats(gate, st);
  if (st[3] != 0 || st[4] != 0 || st[5] != 0 || st[6] != 0) fail("gate not quiescent at the end");
  if (excl != LOAD(excl_entries)) fail("lost updates in colorless sections");
  printf("entries A %lld B %lld X %lld, timeouts %lld, nests %lld, waits %lld, "
         "switches %lld, max forever-wait %.3f ms, violations %lld\n",
         (long long)LOAD(entries[CA]), (long long)LOAD(entries[CB]), (long long)LOAD(entries[CX]),
         (long long)LOAD(timeouts), (long long)LOAD(nests), (long long)st[1], (long long)st[2],
         LOAD(max_wait_ns) / 1e6, (long long)LOAD(violations));
  if (LOAD(entries[CA]) == 0 || LOAD(entries[CB]) == 0 || LOAD(entries[CX]) == 0)
    fail("a class never entered");
  ffipar_obj_release(gate);
  return LOAD(violations) == 0 ? 0 : 1;
}
