/*
** gate_base.c -- C baselines for bench/bench_gate.lua. Prints one number.
**
**   gate_base lock mutex|rwlock|gate N     ns per lock+unlock, one thread
**   gate_base same rwlock|gate SECONDS     M ops/s, two threads, read lock /
**                                          one color, empty sections
**   gate_base handoff cond|gate N [mean]   us from one thread's unlock/leave
**                                          to the other's return (median, or
**                                          mean), threads pinned to CPUs 0, 1
**   gate_base fair gate SECONDS avg|max    us an exclusive thread waits while
**                                          two threads keep color 1 busy
**
** The gate is ffipar's, loaded from $FFIPAR_LIB (default
** ffi/libffipar.so) with dlopen, so this file needs no shim to build.
*/
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ffipar_gate ffipar_gate;
static int (*gate_new)(ffipar_gate **);
static int (*gate_enter)(ffipar_gate *, uint64_t, double);
static int (*gate_leave)(ffipar_gate *);
static double (*gate_private)(void);
static ffipar_gate *gate;

static void load_gate(void)
{
  const char *path = getenv("FFIPAR_LIB") ? getenv("FFIPAR_LIB") : "ffi/libffipar.so";
  /* The shim takes the Lua C API from the process (luajit exports it);
  ** here a libluajit provides it. */
  if (!dlopen("libluajit-5.1.so.2", RTLD_NOW | RTLD_GLOBAL)) {
    fprintf(stderr, "%s\n", dlerror());
    exit(1);
  }
  void *h = dlopen(path, RTLD_NOW);
  if (!h) { fprintf(stderr, "%s\n", dlerror()); exit(1); }
  gate_new = (int (*)(ffipar_gate **))dlsym(h, "ffipar_gate_new");
  gate_enter = (int (*)(ffipar_gate *, uint64_t, double))dlsym(h, "ffipar_gate_enter");
  gate_leave = (int (*)(ffipar_gate *))dlsym(h, "ffipar_gate_leave");
  gate_private = (double (*)(void))dlsym(h, "ffipar_gate_private_color");
  if (!gate_new || !gate_enter || !gate_leave || !gate_private || gate_new(&gate) != 0) {
    fprintf(stderr, "no gate in %s\n", path);
    exit(1);
  }
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void pin(int cpu)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static int use_gate;
static _Atomic int go, stop;
static _Atomic long ops;

/* ---- lock: one thread ---- */

static double bench_lock(const char *what, long n)
{
  double t0 = now();
  if (!strcmp(what, "mutex")) {
    for (long i = 0; i < n; i++) { pthread_mutex_lock(&mu); pthread_mutex_unlock(&mu); }
  } else if (!strcmp(what, "rwlock")) {
    for (long i = 0; i < n; i++) { pthread_rwlock_rdlock(&rw); pthread_rwlock_unlock(&rw); }
  } else {
    for (long i = 0; i < n; i++) { gate_enter(gate, 1, -1); gate_leave(gate); }
  }
  return (now() - t0) / n * 1e9;
}

/* ---- same: two threads, one color / read lock ---- */

static void *same_main(void *arg)
{
  (void)arg;
  long n = 0;
  while (!atomic_load(&go)) {}
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    for (int i = 0; i < 1000; i++) {
      if (use_gate) { gate_enter(gate, 1, -1); gate_leave(gate); }
      else { pthread_rwlock_rdlock(&rw); pthread_rwlock_unlock(&rw); }
    }
    n += 1000;
  }
  atomic_fetch_add(&ops, n);
  return NULL;
}

static double bench_same(double seconds)
{
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, same_main, NULL);
  double t0 = now();
  atomic_store(&go, 1);
  while (now() - t0 < seconds) {}
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  return atomic_load(&ops) / (now() - t0) / 1e6;
}

/* ---- handoff: ping-pong between two pinned threads ---- */

static long rounds;
static _Atomic double left_at;       /* when the last holder let go */
static _Atomic int last;             /* who let go last (1 or 2) */
static double lat_sum;
static long lat_n;
static double *lat;                  /* samples, for the median */
static int want_mean;

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn = 1;

static void spin_us(double us)
{
  double until = now() + us * 1e-6;
  while (now() < until) {}
}

static void *handoff_main(void *arg)
{
  int me = (int)(intptr_t)arg;
  pin(me - 1);
  for (long i = 0; i < rounds; i++) {
    if (use_gate) {
      gate_enter(gate, (uint64_t)me, -1);
      if (atomic_load(&last) != me && atomic_load(&last) != 0) {
        double d = now() - atomic_load(&left_at);   /* inside: no race */
        lat_sum += d;
        lat[lat_n++] = d;
      }
      spin_us(2);
      atomic_store(&left_at, now());
      atomic_store(&last, me);
      gate_leave(gate);
    } else {
      pthread_mutex_lock(&mu);
      while (turn != me) pthread_cond_wait(&cv, &mu);
      if (atomic_load(&last) != 0) {
        double d = now() - atomic_load(&left_at);
        lat_sum += d;
        lat[lat_n++] = d;
      }
      spin_us(2);
      turn = 3 - me;
      atomic_store(&left_at, now());
      atomic_store(&last, me);
      pthread_cond_signal(&cv);
      pthread_mutex_unlock(&mu);
    }
  }
  if (!use_gate) {                   /* let the other finish its last round */
    pthread_mutex_lock(&mu);
    turn = 3 - me;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
  }
  return NULL;
}

static double bench_handoff(long n)
{
  pthread_t t[2];
  rounds = n;
  lat = calloc((size_t)(2 * n + 2), sizeof(double));
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, handoff_main, (void *)(intptr_t)(i + 1));
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  if (!lat_n) return -1;
  if (want_mean) return lat_sum / lat_n * 1e6;
  qsort(lat, (size_t)lat_n, sizeof(double), cmp_double);
  return lat[lat_n / 2] * 1e6;
}

/* ---- fair: an exclusive thread against a busy color ---- */

static void *busy_main(void *arg)
{
  (void)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    gate_enter(gate, 1, -1);
    spin_us(20);
    gate_leave(gate);
  }
  return NULL;
}

static double bench_fair(double seconds, int want_max)
{
  pthread_t t[2];
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, busy_main, NULL);
  uint64_t mine = (uint64_t)gate_private();
  double t0 = now(), sum = 0, max = 0;
  long n = 0;
  spin_us(1000);
  while (now() - t0 < seconds) {
    double w0 = now();
    if (gate_enter(gate, mine, 0.2) == 0) {
      double w = now() - w0;
      sum += w; n++;
      if (w > max) max = w;
      spin_us(20);
      gate_leave(gate);
    }
    spin_us(200);
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  return (want_max ? max : sum / (n ? n : 1)) * 1e6;
}

int main(int argc, char **argv)
{
  if (argc < 4) { fprintf(stderr, "usage: see the header of gate_base.c\n"); return 2; }
  const char *test = argv[1], *what = argv[2];
  use_gate = !strcmp(what, "gate");
  if (use_gate) load_gate();
  double r;
  if (!strcmp(test, "lock")) r = bench_lock(what, atol(argv[3]));
  else if (!strcmp(test, "same")) r = bench_same(atof(argv[3]));
  else if (!strcmp(test, "handoff")) {
    want_mean = argc > 4 && !strcmp(argv[4], "mean");
    r = bench_handoff(atol(argv[3]));
  }
  else if (!strcmp(test, "fair")) r = bench_fair(atof(argv[3]), argc > 4 && !strcmp(argv[4], "max"));
  else return 2;
  printf("%.3f\n", r);
  return 0;
}
