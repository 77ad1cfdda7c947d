/* spawn: microseconds per pthread_create + pthread_join of an empty thread. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void *empty(void *arg) { return arg; }

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 2000;
  double t0 = now();
  for (int i = 0; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, empty, NULL) != 0) return 1;
    pthread_join(t, NULL);
  }
  printf("%.3f\n", (now() - t0) / n * 1e6);
  return 0;
}
