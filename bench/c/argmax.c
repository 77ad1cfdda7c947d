/* argmax: seconds for the best of score(i) = sin(0.001 i) * cos(0.0007 i)
** over [0, n) on T threads, with the chunking pool:argmax uses (chunks of
** ceil(n / (T * 16)) claimed from an atomic counter).
** usage: argmax N THREADS */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long n, chunk;
static _Atomic long next;

typedef struct { double best; long at; } result;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *work(void *arg)
{
  result *r = arg;
  r->best = -INFINITY;
  r->at = -1;
  for (;;) {
    long lo = atomic_fetch_add(&next, chunk);
    if (lo >= n) return NULL;
    long hi = lo + chunk < n ? lo + chunk : n;
    for (long i = lo; i < hi; i++) {
      double s = sin(0.001 * i) * cos(0.0007 * i);
      if (s > r->best) { r->best = s; r->at = i; }
    }
  }
}

int main(int argc, char **argv)
{
  n = argc > 1 ? atol(argv[1]) : 10000000;
  int t = argc > 2 ? atoi(argv[2]) : 2;
  chunk = (n + t * 16 - 1) / (t * 16);
  pthread_t th[64];
  result r[64];
  double t0 = now();
  for (int i = 0; i < t; i++) pthread_create(&th[i], NULL, work, &r[i]);
  result best = { -INFINITY, -1 };
  for (int i = 0; i < t; i++) {
    pthread_join(th[i], NULL);
    if (r[i].at >= 0 && (r[i].best > best.best || (r[i].best == best.best && r[i].at < best.at)))
      best = r[i];
  }
  printf("%.6f\n", now() - t0);
  fprintf(stderr, "best %.15g at %ld\n", best.best, best.at);
  return 0;
}
