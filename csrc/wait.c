/*
** wait.c -- the clock, deadlines, and the one futex wait that every blocking
** ffipar call goes through, so that timeouts and cancellation behave the
** same everywhere.
*/
#include "shim.h"
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>
#include <linux/futex.h>
#include <sys/syscall.h>

/* Defined in thread.c: register the futex a worker sleeps on, so that
** ffipar_thread_cancel can wake it. Return nonzero when already cancelled. */
int  thread_wait_begin(_Atomic uint32_t *addr);
void thread_wait_end(void);

/* A cancel that lands between the waiter's check and its sleep wakes the
** futex too early to be seen; a worker therefore never sleeps longer than
** this, and re-checks. A main thread cannot be cancelled and sleeps whole. */
#define CANCEL_SLICE_NS 50000000LL

int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double ffipar_now(void)
{
  return (double)now_ns() * 1e-9;
}

double ffipar_cpu_now(void)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int64_t deadline_of(double timeout)
{
  if (timeout < 0 || timeout != timeout) return -1;
  if (timeout == 0) return 0;
  if (timeout > 1e9) return -1;            /* ~31 years: forever */
  int64_t d = now_ns() + (int64_t)(timeout * 1e9);
  return d > 0 ? d : 1;
}

int futex_wait(_Atomic uint32_t *addr, uint32_t expected, int64_t deadline)
{
  if (deadline == 0) return FFIPAR_ETIMEOUT;
  int worker = thread_wait_begin(addr);
  if (worker < 0) { thread_wait_end(); return FFIPAR_ECANCELLED; }
  int64_t until = deadline;
  if (worker) {
    int64_t slice = now_ns() + CANCEL_SLICE_NS;
    if (until < 0 || slice < until) until = slice;
  }
  struct timespec ts, *tsp = NULL;
  if (until > 0) {
    ts.tv_sec = until / 1000000000LL;
    ts.tv_nsec = until % 1000000000LL;
    tsp = &ts;
  }
  /* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so retries
  ** after EINTR or a spurious wake never stretch the deadline. */
  long r = syscall(SYS_futex, (uint32_t *)addr,
                   FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, tsp,
                   NULL, FUTEX_BITSET_MATCH_ANY);
  int err = r < 0 ? errno : 0;
  thread_wait_end();
  if (self_cancelled()) return FFIPAR_ECANCELLED;
  if (err == ETIMEDOUT && deadline > 0 && now_ns() >= deadline)
    return FFIPAR_ETIMEOUT;
  return FFIPAR_OK;
}

int spin_while(_Atomic uint32_t *addr, uint32_t value, int64_t ns)
{
  int64_t until = now_ns() + ns;
  for (int i = 1;; i++) {
    if (atomic_load_explicit(addr, memory_order_acquire) != value) return 1;
    if ((i & 31) == 0 && now_ns() >= until) return 0;
    cpu_relax();
  }
}

void futex_wake(_Atomic uint32_t *addr, int n)
{
  syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE | FUTEX_PRIVATE_FLAG, n,
          NULL, NULL, 0);
}

int ffipar_sleep(double seconds)
{
  _Atomic uint32_t never = 0;
  int64_t deadline = deadline_of(seconds);
  if (deadline == 0) return self_cancelled() ? FFIPAR_ECANCELLED : FFIPAR_OK;
  for (;;) {
    int rc = futex_wait(&never, 0, deadline);
    if (rc == FFIPAR_ETIMEOUT) return FFIPAR_OK;
    if (rc == FFIPAR_ECANCELLED) return rc;
  }
}

int ffipar_cpus(void)
{
  cpu_set_t set;
  /* The process's mask (its main thread's), not the calling thread's: a
  ** worker may have pinned its own thread. */
  if (sched_getaffinity(getpid(), sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}
