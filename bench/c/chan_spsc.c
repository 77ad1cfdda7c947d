/* chan_spsc: ns per item through a lock-free single-producer single-consumer
** ring (one acquire/release index per side, cached copy of the other side's
** index), spinning then yielding when full/empty: the floor for handing an
** item from one core to another. Usage: chan_spsc [items] [capacity] [item bytes] */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct {
  _Alignas(64) _Atomic size_t head;   /* next pop, written by the consumer */
  _Alignas(64) _Atomic size_t tail;   /* next push, written by the producer */
  _Alignas(64) char *buf;
  size_t size, cap;
} q;

static long items;

static void relax(int *spins)
{
  if (++*spins < 100) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  } else {
    sched_yield();
  }
}

static void *producer(void *arg)
{
  char item[256] = { 0 };
  size_t tail = 0, head = 0;
  for (long i = 1; i <= items; i++) {
    memcpy(item, &i, sizeof(i));
    int spins = 0;
    while (tail - head == q.cap) {
      /* Acquire: the consumer's reads of the slot are done. */
      head = atomic_load_explicit(&q.head, memory_order_acquire);
      if (tail - head == q.cap) relax(&spins);
    }
    memcpy(q.buf + (tail % q.cap) * q.size, item, q.size);
    tail++;
    /* Release: the item is written before the consumer sees the index. */
    atomic_store_explicit(&q.tail, tail, memory_order_release);
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
  size_t head = 0, tail = 0;
  for (long i = 0; i < items; i++) {
    int spins = 0;
    while (head == tail) {
      tail = atomic_load_explicit(&q.tail, memory_order_acquire);
      if (head == tail) relax(&spins);
    }
    long v;
    memcpy(item, q.buf + (head % q.cap) * q.size, q.size);
    memcpy(&v, item, sizeof(v));
    sum += v;
    head++;
    atomic_store_explicit(&q.head, head, memory_order_release);
  }
  pthread_join(t, NULL);
  double dt = now() - t0;
  if (sum != items * (items + 1) / 2) return 1;
  printf("%.1f\n", dt / items * 1e9);
  return 0;
}
