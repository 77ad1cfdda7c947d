/* pingpong: the round trip of one cache line between CPU 0 and CPU 1, in
** ns: two pinned threads take turns writing a counter the other waits
** for. Every figure of `make bench` that hands data from one core to the
** other (channels, wakes, a worker reading what the caller wrote) costs a
** few of these. On a VM the round trip is the host's: it depends on where
** the host runs the two virtual CPUs (measured 50, 105-139 and 513-522 ns
** on the 2-CPU VM of 2026-12-01, at different times), so the row says which
** machine a report's cross-core figures ran on. Usage: pingpong [rounds] */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) _Atomic long ping;
static _Alignas(64) _Atomic long pong;
static long rounds;

static void pin(int cpu)
{
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);   /* a hint: unpinned still measures */
}

static void *answer(void *arg)
{
  (void)arg;
  pin(1);
  for (long i = 1; i <= rounds; i++) {
    while (atomic_load_explicit(&ping, memory_order_acquire) != i) {}
    atomic_store_explicit(&pong, i, memory_order_release);
  }
  return NULL;
}

static double now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
  rounds = argc > 1 ? atol(argv[1]) : 200000;
  pin(0);
  pthread_t t;
  pthread_create(&t, NULL, answer, NULL);
  double t0 = now();
  for (long i = 1; i <= rounds; i++) {
    atomic_store_explicit(&ping, i, memory_order_release);
    while (atomic_load_explicit(&pong, memory_order_acquire) != i) {}
  }
  double dt = now() - t0;
  pthread_join(t, NULL);
  printf("%.1f\n", dt / rounds * 1e9);
  return 0;
}
