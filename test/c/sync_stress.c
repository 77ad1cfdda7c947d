/*
** sync_stress.c -- the shim's mutex, cond, barrier, semaphore and atomics
** hammered from plain pthreads (no Lua in the way, so far more contention
** per second than the Lua tests), each with an invariant checked at the end.
** Exit status 0 = pass. Run by `make test`, and under the sanitizers.
*/
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "ffipar.h"

#define NT 4

static long iters;
static ffipar_mutex *mtx;
static ffipar_cond *cv;
static ffipar_barrier *bar;
static ffipar_semaphore *sem;
static ffipar_atomic *counter;
static int64_t i64cell;
static int32_t i32cell;
static double f64cell;
static long plain_m;           /* guarded by mtx */
static long plain_s;           /* guarded by sem */
static long turn, turns;       /* guarded by mtx (cond hand-off) */
static int slots[NT];
static int failures;

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
  __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST); } } while (0)

static void *worker(void *arg)
{
  int me = (int)(intptr_t)arg;          /* 0..NT-1; the mutex key is me + 1 */
  for (long i = 0; i < iters; i++) {
    /* timed locks now and then, so the give-up path runs too */
    if (i % 8 == 0) {
      while (ffipar_mutex_lock(mtx, me + 1, 0.000001) != FFIPAR_OK) {}
    } else {
      CHECK(ffipar_mutex_lock(mtx, me + 1, -1) == FFIPAR_OK, "lock failed");
    }
    plain_m++;
    CHECK(ffipar_mutex_unlock(mtx, me + 1) == FFIPAR_OK, "unlock failed");
    ffipar_atomic_add(counter, 1);
    ffipar_atomics_add_i64(&i64cell, 2);
    ffipar_atomics_add_i32(&i32cell, 1);
    ffipar_atomics_add_f64(&f64cell, 0.5);
  }
  /* semaphore as a lock */
  for (long i = 0; i < iters; i++) {
    CHECK(ffipar_semaphore_acquire(sem, i % 8 ? -1 : 30) == FFIPAR_OK, "acquire failed");
    plain_s++;
    CHECK(ffipar_semaphore_release(sem, 1) == FFIPAR_OK, "release failed");
  }
  /* barrier rounds: nobody runs ahead; one winner per round */
  int won = 0;
  for (long r = 1; r <= iters / 100; r++) {
    __atomic_store_n(&slots[me], (int)r, __ATOMIC_SEQ_CST);
    int rc = ffipar_barrier_wait(bar, -1);
    CHECK(rc == 0 || rc == 1, "barrier wait failed: %d", rc);
    won += rc;
    for (int j = 0; j < NT; j++)
      CHECK(__atomic_load_n(&slots[j], __ATOMIC_SEQ_CST) == r, "barrier round %ld: slot %d", r, j);
    ffipar_barrier_wait(bar, -1);
  }
  /* cond: threads take turns in order 0, 1, 2, 3, 0, ... */
  for (long r = 0; r < iters / 100; r++) {
    ffipar_mutex_lock(mtx, me + 1, -1);
    while (turn != me) {
      int rc = ffipar_cond_wait(cv, mtx, me + 1, 30);
      CHECK(rc == FFIPAR_OK, "cond wait failed: %d", rc);
      if (rc != FFIPAR_OK) break;
    }
    turn = (turn + 1) % NT;
    turns++;
    ffipar_cond_broadcast(cv);
    ffipar_mutex_unlock(mtx, me + 1);
  }
  return (void *)(intptr_t)won;
}

int main(int argc, char **argv)
{
  iters = argc > 1 ? atol(argv[1]) : (getenv("FFIPAR_SANITIZER") ? 20000 : 200000);
  if (ffipar_mutex_new(&mtx) || ffipar_cond_new(&cv) || ffipar_barrier_new(&bar, NT) ||
      ffipar_semaphore_new(&sem, 1) || ffipar_atomic_new(&counter, 0)) return 2;
  pthread_t t[NT];
  for (int i = 0; i < NT; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  long won = 0;
  for (int i = 0; i < NT; i++) {
    void *r;
    pthread_join(t[i], &r);
    won += (intptr_t)r;
  }
  CHECK(plain_m == NT * iters, "under the mutex %ld, want %ld", plain_m, NT * iters);
  CHECK(plain_s == NT * iters, "under the semaphore %ld, want %ld", plain_s, NT * iters);
  CHECK(ffipar_atomic_load(counter) == (double)(NT * iters), "atomic %g", ffipar_atomic_load(counter));
  CHECK(i64cell == 2 * NT * iters, "i64 %ld", (long)i64cell);
  CHECK(i32cell == NT * iters, "i32 %d", i32cell);
  CHECK(f64cell == 0.5 * NT * iters, "f64 %g", f64cell);
  CHECK(won == iters / 100, "barrier winners %ld, want %ld", won, iters / 100);
  CHECK(turns == NT * (iters / 100), "cond turns %ld", turns);
  CHECK(ffipar_semaphore_count(sem) == 1, "semaphore count");
  CHECK(ffipar_mutex_owner(mtx) == -1, "mutex left locked");
  CHECK(ffipar_mutex_unlock(mtx, 1) == FFIPAR_EPERM, "unlock of a free mutex");
  CHECK(ffipar_mutex_lock(mtx, 1, -1) == FFIPAR_OK && ffipar_mutex_lock(mtx, 1, -1) == FFIPAR_EBUSY,
        "relock must be EBUSY");
  CHECK(ffipar_mutex_unlock(mtx, 2) == FFIPAR_EPERM && ffipar_mutex_unlock(mtx, 1) == FFIPAR_OK,
        "unlock by another key");
  CHECK(ffipar_barrier_new(&bar, 0) == FFIPAR_EINVAL && ffipar_semaphore_new(&sem, -1) == FFIPAR_EINVAL,
        "bad sizes");
  ffipar_obj_release(mtx); ffipar_obj_release(cv); ffipar_obj_release(bar);
  ffipar_obj_release(sem); ffipar_obj_release(counter);
  CHECK(ffipar_obj_live() == 0, "live objects: %ld", (long)ffipar_obj_live());
  if (failures) { fprintf(stderr, "%d failures\n", failures); return 1; }
  printf("ok\n");
  return 0;
}
