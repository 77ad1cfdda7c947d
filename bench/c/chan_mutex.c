/* chan_mutex: ns per item through a bounded queue guarded by a mutex and two
** condition variables, one producer thread and one consumer thread: the
** textbook C baseline for ffipar channels.
** Usage: chan_mutex [items] [capacity] [item bytes] */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  char *buf;
  size_t size, cap, head, len;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0 };

static long items;

static void push(const void *item)
{
  pthread_mutex_lock(&q.lock);
  while (q.len == q.cap) pthread_cond_wait(&q.not_full, &q.lock);
  memcpy(q.buf + ((q.head + q.len) % q.cap) * q.size, item, q.size);
  q.len++;
  pthread_cond_signal(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
}

static void pop(void *out)
{
  pthread_mutex_lock(&q.lock);
  while (q.len == 0) pthread_cond_wait(&q.not_empty, &q.lock);
  memcpy(out, q.buf + q.head * q.size, q.size);
  q.head = (q.head + 1) % q.cap;
  q.len--;
  pthread_cond_signal(&q.not_full);
  pthread_mutex_unlock(&q.lock);
}

static void *producer(void *arg)
{
  char item[256] = { 0 };
  for (long i = 1; i <= items; i++) {
    memcpy(item, &i, sizeof(i));
    push(item);
  }
  return arg;
}

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
  items = argc > 1 ? atol(argv[1]) : 1000000;
  q.cap = argc > 2 ? (size_t)atol(argv[2]) : 1024;
  q.size = argc > 3 ? (size_t)atol(argv[3]) : 8;
  if (q.size < sizeof(long) || q.size > 256) return 2;
  q.buf = malloc(q.cap * q.size);
  double t0 = now();
  pthread_t t;
  if (pthread_create(&t, NULL, producer, NULL) != 0) return 1;
  char item[256];
  long sum = 0;
  for (long i = 0; i < items; i++) {
    long v;
    pop(item);
    memcpy(&v, item, sizeof(v));
    sum += v;
  }
  pthread_join(t, NULL);
  double dt = now() - t0;
  if (sum != items * (items + 1) / 2) return 1;
  printf("%.1f\n", dt / items * 1e9);
  return 0;
}
