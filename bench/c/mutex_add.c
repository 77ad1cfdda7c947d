/* mutex_add: ns per increment when 2 threads each do N
** pthread_mutex_lock; counter++; pthread_mutex_unlock on one shared
** counter, timed from the barrier to the last finish. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static pthread_barrier_t start;
static long n;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *run(void *arg)
{
  double *span = arg;
  pthread_barrier_wait(&start);
  span[0] = now();
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&lock);
    counter++;
    pthread_mutex_unlock(&lock);
  }
  span[1] = now();
  return NULL;
}

int main(int argc, char **argv)
{
  n = argc > 1 ? atol(argv[1]) : 1000000;
  pthread_t t[2];
  double span[2][2];
  pthread_barrier_init(&start, NULL, 2);
  for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, run, span[i]);
  for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
  if (counter != 2 * n) return 1;
  double t0 = span[0][0] < span[1][0] ? span[0][0] : span[1][0];
  double t1 = span[0][1] > span[1][1] ? span[0][1] : span[1][1];
  printf("%.3f\n", (t1 - t0) / (2.0 * n) * 1e9);
  return 0;
}
