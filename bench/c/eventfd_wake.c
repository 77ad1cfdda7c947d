/* eventfd_wake: the floor under ffipar.uv's latency on this machine -- the
** median microseconds from a thread's last instruction (after 2 ms of
** computing, like the bench's task, or with `sleep` as argument 2, after a
** 2 ms sleep) to another thread, asleep in poll() on an eventfd, running
** again after one write to it. 200 rounds, each on a new thread, or with
** `pool` as argument 2 on one long-lived thread that takes each round's
** job from a second eventfd, as a pool worker does. On this VM the pool
** form is the slower one: 41-47 us against 7-11 (2026-12-01), the same
** gap as ffipar's pool wake showed against the new-thread form. */
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static int efd;
static double t_end;
static int sleeping;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *task(void *arg)
{
  (void)arg;
  if (sleeping) {
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
    t_end = now();
  } else {
    double until = now() + 0.002;
    while ((t_end = now()) < until) {}
  }
  uint64_t one = 1;
  if (write(efd, &one, 8) != 8) exit(1);
  return NULL;
}

/* `pool` mode: one long-lived thread takes each round's job from a second
** eventfd, as a pool worker does, instead of a new thread per round. */
static int jobfd;
static void *worker(void *arg)
{
  (void)arg;
  for (;;) {
    struct pollfd p = { .fd = jobfd, .events = POLLIN };
    while (poll(&p, 1, -1) != 1) {}
    uint64_t v;
    if (read(jobfd, &v, 8) != 8) exit(1);
    task(NULL);
  }
  return NULL;
}

static int cmp(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
  int n = argc > 1 ? atoi(argv[1]) : 200;
  sleeping = argc > 2 && argv[2][0] == 's';
  int pool = argc > 2 && argv[2][0] == 'p';
  double *lat = malloc(sizeof(double) * n);
  efd = eventfd(0, EFD_NONBLOCK);
  jobfd = eventfd(0, EFD_NONBLOCK);
  if (!lat || efd < 0 || jobfd < 0) return 1;
  pthread_t w;
  if (pool && pthread_create(&w, NULL, worker, NULL) != 0) return 1;
  for (int i = 0; i < n; i++) {
    pthread_t t;
    uint64_t one = 1;
    if (pool) {
      if (write(jobfd, &one, 8) != 8) return 1;
    } else if (pthread_create(&t, NULL, task, NULL) != 0) return 1;
    struct pollfd p = { .fd = efd, .events = POLLIN };
    while (poll(&p, 1, 5000) != 1) {}
    lat[i] = (now() - t_end) * 1e6;
    uint64_t v;
    if (read(efd, &v, 8) != 8) return 1;
    if (!pool) pthread_join(t, NULL);
  }
  qsort(lat, n, sizeof(double), cmp);
  printf("%.3f\n", lat[(n - 1) / 2]);
  return 0;
}
