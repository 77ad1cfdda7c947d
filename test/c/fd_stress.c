/* fd_stress: the readiness descriptors (t:fd(), ch:fd()) under races.
**
** Threads: a job ends on a finisher thread while the main thread asks for
** its descriptor at a random moment (before, during, after the end; twice
** at once from two threads; after a join). Checked: the descriptor turns
** readable within a bound when the job ended and was not joined, join(0)
** then succeeds, and after the first join it is not readable again (after
** a blocking join that raced the end, within a bound).
**
** Channels: producers push with random pauses (so the channel keeps going
** empty) while "event loop" consumers wait in poll() on the descriptor,
** one of them creating it after the producers started, and drain with
** pop(0); a blocking consumer and a selector take items too. Checked: every
** item arrives exactly once; no lost wake-up (a poll that times out while
** pop(0) then finds an item fails the test); the descriptor is readable
** once the channel is closed and drained. Spurious wake-ups (readable, but
** another consumer took the item) are counted, not failed.
**
** Last: no descriptor outlives its object (/proc/self/fd counted), and no
** object is left alive. Bounded: every wait has a timeout. */
#include "shim.h"
#include <dirent.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
  fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); exit(1); } } while (0)

static int sanitized;
/* How long a wait for a pop may take: valgrind runs one thread at a time,
** so a spinning waiter there slows the consumer it waits for. */
static int64_t reach_ns = 3000000000LL;

static int open_fds(void)
{
  DIR *d = opendir("/proc/self/fd");
  int n = 0;
  if (!d) return -1;
  while (readdir(d)) n++;
  closedir(d);
  return n;
}

static int readable(int fd, int ms)
{
  struct pollfd p = { .fd = fd, .events = POLLIN };
  int r;
  while ((r = poll(&p, 1, ms)) < 0) {}
  return r == 1 && (p.revents & POLLIN);
}

static unsigned rnd(unsigned *s)
{
  *s = *s * 1103515245u + 12345u;
  return *s >> 16;
}

static void spin(unsigned n)
{
  for (volatile unsigned i = 0; i < n; i++) {}
}

/* ---- threads ---- */

static ffipar_channel *jobs;              /* ffipar_thread * items */
static _Atomic int ran;                   /* jobs the finishers are through with */

static void *finisher(void *arg)
{
  (void)arg;
  ffipar_thread *t;
  while (ffipar_channel_pop(jobs, &t, 10.0) == FFIPAR_OK) {
    spin(rnd(&(unsigned){ (unsigned)(uintptr_t)t }) % 2000);
    thread_run(NULL, t);                  /* fails it (no state), ends it, drops its ref */
    atomic_fetch_add(&ran, 1);
  }
  return NULL;
}

static ffipar_thread *shared_t;
static _Atomic int second_fd;

static void *second_creator(void *arg)
{
  (void)arg;
  int fd;
  CHECK(ffipar_thread_fd(shared_t, &fd) == FFIPAR_OK, "fd from a second thread");
  atomic_store(&second_fd, fd);
  return NULL;
}

static void threads(int n)
{
  unsigned seed = 7;
  pthread_t fin[2];
  CHECK(ffipar_channel_new(&jobs, 64, sizeof(void *), sizeof(void *), 0) == FFIPAR_OK, "jobs");
  for (int i = 0; i < 2; i++) pthread_create(&fin[i], NULL, finisher, NULL);
  int counts[7] = { 0 };
  for (int i = 0; i < n; i++) {
    ffipar_thread *t = thread_alloc(ffipar_msg_new("", 0, NULL, 0), NULL, NULL, 0);
    CHECK(t, "thread_alloc");
    int mode = (int)(rnd(&seed) % 7), fd = -1, fd2 = -1;
    counts[mode]++;
    if (mode == 0) CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd before start");
    pthread_t other;
    if (mode == 3) { shared_t = t; atomic_store(&second_fd, -1); pthread_create(&other, NULL, second_creator, NULL); }
    CHECK(ffipar_channel_push(jobs, &t, 10.0) == FFIPAR_OK, "hand over");
    spin(rnd(&seed) % 3000);
    if (mode == 5) {
      /* The descriptor closed early, racing the end; a pipe then likely
      ** takes its number, and must get no stray signal. */
      CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd");
      spin(rnd(&seed) % 3000);
      CHECK(ffipar_thread_fd_close(t) == FFIPAR_OK, "fd_close");
      int p[2];
      CHECK(pipe(p) == 0, "pipe");
      CHECK(ffipar_thread_fd(t, &fd2) == FFIPAR_ECLOSED, "fd after fd_close");
      CHECK(ffipar_thread_join(t, 10.0) == FFIPAR_OK, "join");
      for (int k = 0; atomic_load(&ran) <= i && k < 10000; k++) sched_yield();
      CHECK(!readable(p[0], 0), "a signal went to a closed descriptor's number");
      close(p[0]);
      close(p[1]);
    } else if (mode == 6) {
      /* ffipar.uv's way: take (join(0) without the reset) the moment the
      ** job is done, racing the finisher's signal, then close at once; the
      ** number's next owner must get no stray signal. */
      CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd");
      int64_t until = now_ns() + reach_ns;
      while (ffipar_thread_take(t) != FFIPAR_OK && now_ns() < until) {}
      CHECK(ffipar_thread_status(t) != 0, "take before the end (iteration %d)", i);
      CHECK(ffipar_thread_fd_close(t) == FFIPAR_OK, "fd_close");
      int p[2];
      CHECK(pipe(p) == 0, "pipe");
      for (int k = 0; atomic_load(&ran) <= i && k < 10000; k++) sched_yield();
      CHECK(!readable(p[0], 0), "a signal went to a closed descriptor's number after take");
      close(p[0]);
      close(p[1]);
    } else if (mode == 4) {
      /* A blocking join racing the end, then a descriptor: never readable
      ** after the join (a signal in flight is reset by its writer). */
      if (rnd(&seed) % 2) CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd before the join");
      CHECK(ffipar_thread_join(t, 10.0) == FFIPAR_OK, "blocking join");
      CHECK(!readable(fd, 0) || fd < 0, "readable just after a blocking join (iteration %d)", i);
      if (fd < 0) CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd after the join");
      /* Nor later, once the finisher is through. */
      for (int k = 0; atomic_load(&ran) <= i && k < 10000; k++) {
        struct timespec ts = { 0, 1000000 };
        nanosleep(&ts, NULL);
      }
      CHECK(atomic_load(&ran) == i + 1, "the finisher is stuck");
      CHECK(!readable(fd, 0), "readable after a blocking join (iteration %d)", i);
    } else {
      if (fd < 0) CHECK(ffipar_thread_fd(t, &fd) == FFIPAR_OK, "fd while it ends");
      if (mode == 3) {
        pthread_join(other, NULL);
        fd2 = atomic_load(&second_fd);
        CHECK(fd2 == fd, "two creators got %d and %d", fd, fd2);
      }
      CHECK(readable(fd, 10000), "never readable after the end (iteration %d, mode %d)", i, mode);
      CHECK(ffipar_thread_status(t) != 0, "readable before the end");
      CHECK(ffipar_thread_join(t, 0) == FFIPAR_OK, "join(0) after readiness");
      CHECK(!readable(fd, 0), "readable after join(0) (iteration %d, mode %d)", i, mode);
      if (mode == 2) {
        /* Asking again gives the same descriptor, still consumed. */
        int again;
        CHECK(ffipar_thread_fd(t, &again) == FFIPAR_OK && again == fd, "same descriptor");
        CHECK(ffipar_thread_join(t, 0) == FFIPAR_OK && !readable(fd, 0), "a second join");
      }
    }
    ffipar_obj_release(t);
    for (int k = 0; atomic_load(&ran) <= i && k < 10000; k++) sched_yield();
  }
  ffipar_channel_close(jobs);
  for (int i = 0; i < 2; i++) pthread_join(fin[i], NULL);
  ffipar_obj_release(jobs);
  printf("threads: %d ends (%d/%d/%d/%d/%d/%d/%d by mode), each readable once\n", n,
         counts[0], counts[1], counts[2], counts[3], counts[4], counts[5], counts[6]);
}

/* ---- channels ---- */

enum { PRODUCERS = 2, LOOPS = 2 };
static ffipar_channel *ch;
static int per;
static _Atomic int64_t popped, spurious, wakes;
static _Atomic unsigned char *seen;
static _Atomic int the_fd = -1;

static void take(int64_t v)
{
  CHECK(v >= 1 && v <= (int64_t)PRODUCERS * per, "bad item %lld", (long long)v);
  CHECK(atomic_fetch_add(&seen[v], 1) == 0, "item %lld twice", (long long)v);
  atomic_fetch_add(&popped, 1);
}

/* Wait (bounded) until `n` items were popped: false when they were not. */
static int popped_reach(int64_t n)
{
  int64_t until = now_ns() + reach_ns;
  while (atomic_load(&popped) < n) {
    if (now_ns() > until) return 0;
    sched_yield();
  }
  return 1;
}

static int lockstep;

static void *producer(void *arg)
{
  int id = (int)(intptr_t)arg;
  unsigned seed = (unsigned)id * 77 + 1;
  if (lockstep) {
    /* One producer, at most two items in flight, so each push races with
    ** the pop (and re-arm) of the item before; often it then waits for its
    ** own item, so a lost signal is not covered up by the next push. */
    for (int64_t v = 1; v <= per; v++) {
      CHECK(popped_reach(v - 2), "item %lld not taken in time", (long long)v - 2);
      CHECK(ffipar_channel_push(ch, &v, 10.0) == FFIPAR_OK, "push");
      if (rnd(&seed) % 2) CHECK(popped_reach(v), "lost wake-up: item %lld not taken in time", (long long)v);
    }
    return NULL;
  }
  for (int i = 0; i < per; i++) {
    int64_t v = (int64_t)id * per + i + 1;
    CHECK(ffipar_channel_push(ch, &v, 10.0) == FFIPAR_OK, "push");
    unsigned r = rnd(&seed) % 100;
    if (r < 5) { struct timespec ts = { 0, 200000 }; nanosleep(&ts, NULL); }
    else if (r < 50) spin(r * 40);
  }
  return NULL;
}

/* An event loop: poll, then pop(0) until nothing; the first one makes the
** descriptor once the producers are running. */
static void *loop(void *arg)
{
  int fd;
  if ((intptr_t)arg == 0) {
    spin(20000);
    CHECK(ffipar_channel_fd(ch, &fd) == FFIPAR_OK, "channel fd");
    atomic_store(&the_fd, fd);
  } else {
    while ((fd = atomic_load(&the_fd)) < 0) sched_yield();
  }
  for (;;) {
    if (!readable(fd, 3000)) {
      int64_t v;
      int rc = ffipar_channel_pop(ch, &v, 0);
      CHECK(rc != FFIPAR_OK && rc != FFIPAR_ECLOSED,
            "lost wake-up: not readable for 3 s, but pop(0) gave %s", rc == FFIPAR_OK ? "an item" : "closed");
      continue;
    }
    atomic_fetch_add(&wakes, 1);
    int got = 0;
    for (;;) {
      int64_t v;
      int rc = ffipar_channel_pop(ch, &v, 0);
      if (rc == FFIPAR_OK) { take(v); got++; continue; }
      if (rc == FFIPAR_ECLOSED) {
        CHECK(readable(fd, 0), "closed and drained, but not readable");
        return NULL;
      }
      CHECK(rc == FFIPAR_ETIMEOUT, "pop(0) rc %d", rc);
      break;
    }
    if (!got) atomic_fetch_add(&spurious, 1);
  }
}

static void *blocking(void *arg)
{
  (void)arg;
  int64_t v;
  int rc;
  while ((rc = ffipar_channel_pop(ch, &v, 10.0)) == FFIPAR_OK) {
    take(v);
    spin(5000);                           /* leave most items to the loops */
  }
  CHECK(rc == FFIPAR_ECLOSED, "blocking pop rc %d", rc);
  return NULL;
}

static void *selecting(void *arg)
{
  (void)arg;
  int64_t v;
  int which, rc;
  while ((rc = ffipar_channel_select(&ch, 1, &v, &which, 10.0)) == FFIPAR_OK) {
    take(v);
    spin(5000);
  }
  CHECK(rc == FFIPAR_ECLOSED, "select rc %d", rc);
  return NULL;
}

static void channels(int n, int cap, int step)
{
  per = n;
  lockstep = step;
  popped = spurious = wakes = 0;
  atomic_store(&the_fd, -1);
  seen = calloc((size_t)PRODUCERS * n + 1, 1);
  CHECK(seen, "memory");
  CHECK(ffipar_channel_new(&ch, cap, sizeof(int64_t), sizeof(int64_t), 0) == FFIPAR_OK, "channel");
  int np = step ? 1 : PRODUCERS;
  pthread_t p[PRODUCERS], l[LOOPS], b, s;
  for (int i = 0; i < np; i++) pthread_create(&p[i], NULL, producer, (void *)(intptr_t)i);
  for (int i = 0; i < LOOPS; i++) pthread_create(&l[i], NULL, loop, (void *)(intptr_t)i);
  if (!step) {                            /* lockstep: only the loops take items */
    pthread_create(&b, NULL, blocking, NULL);
    pthread_create(&s, NULL, selecting, NULL);
  }
  for (int i = 0; i < np; i++) pthread_join(p[i], NULL);
  ffipar_channel_close(ch);
  for (int i = 0; i < LOOPS; i++) pthread_join(l[i], NULL);
  if (!step) {
    pthread_join(b, NULL);
    pthread_join(s, NULL);
  }
  CHECK(popped == (int64_t)np * n, "popped %lld of %lld", (long long)popped, (long long)np * n);
  ffipar_obj_release(ch);
  free((void *)seen);
  printf("channel cap %d%s: %d items exactly once, %lld wake-ups (%lld found nothing)\n",
         cap, step ? " lockstep" : "", np * n, (long long)wakes, (long long)spurious);
}

/* Items queued before the descriptor is made; close; reset rules. */
static void basics(void)
{
  ffipar_channel *c;
  int fd, fd2;
  int64_t v = 5;
  CHECK(ffipar_channel_new(&c, 4, sizeof(v), sizeof(v), 0) == FFIPAR_OK, "channel");
  CHECK(ffipar_channel_push(c, &v, 0) == FFIPAR_OK, "push");
  CHECK(ffipar_channel_fd(c, &fd) == FFIPAR_OK && readable(fd, 0), "an item queued before the fd");
  CHECK(ffipar_channel_fd(c, &fd2) == FFIPAR_OK && fd2 == fd, "the same fd twice");
  CHECK(ffipar_channel_pop(c, &v, 0) == FFIPAR_OK && !readable(fd, 0), "reset by the pop that empties");
  CHECK(ffipar_channel_pop(c, &v, 0) == FFIPAR_ETIMEOUT && !readable(fd, 0), "empty stays unreadable");
  CHECK(ffipar_channel_push(c, &v, 0) == FFIPAR_OK && ffipar_channel_push(c, &v, 0) == FFIPAR_OK &&
        readable(fd, 0), "readable after pushes");
  CHECK(ffipar_channel_pop(c, &v, 0) == FFIPAR_OK && readable(fd, 0), "one left: still readable");
  ffipar_channel_close(c);
  CHECK(ffipar_channel_pop(c, &v, 0) == FFIPAR_OK && readable(fd, 0), "drained but closed: readable");
  CHECK(ffipar_channel_pop(c, &v, 0) == FFIPAR_ECLOSED && readable(fd, 0), "closed stays readable");
  ffipar_obj_release(c);
  CHECK(ffipar_channel_new(&c, 2, sizeof(v), sizeof(v), 0) == FFIPAR_OK, "channel");
  CHECK(ffipar_channel_fd(c, &fd) == FFIPAR_OK && !readable(fd, 0), "empty: not readable");
  ffipar_channel_close(c);
  CHECK(readable(fd, 0), "close makes it readable");
  ffipar_obj_release(c);
  /* Closed early: pushes and pops go on, nothing is written to its number. */
  CHECK(ffipar_channel_new(&c, 2, sizeof(v), sizeof(v), 0) == FFIPAR_OK, "channel");
  CHECK(ffipar_channel_fd(c, &fd) == FFIPAR_OK && ffipar_channel_fd_close(c) == FFIPAR_OK, "fd_close");
  int p[2];
  CHECK(pipe(p) == 0, "pipe");
  CHECK(ffipar_channel_push(c, &v, 0) == FFIPAR_OK && ffipar_channel_pop(c, &v, 0) == FFIPAR_OK &&
        ffipar_channel_pop(c, &v, 0) == FFIPAR_ETIMEOUT, "push and pop after fd_close");
  ffipar_channel_close(c);
  CHECK(!readable(p[0], 0), "a signal went to a closed descriptor's number");
  CHECK(ffipar_channel_fd(c, &fd) == FFIPAR_ECLOSED, "fd after fd_close");
  close(p[0]);
  close(p[1]);
  ffipar_obj_release(c);
  puts("basics: ok");
}

int main(int argc, char **argv)
{
  sanitized = getenv("FFIPAR_SANITIZER") != NULL;
  if (getenv("FFIPAR_VALGRIND")) reach_ns = 60000000000LL;
  int scale = argc > 1 ? atoi(argv[1]) : (sanitized ? 1 : 5);
  int64_t live0 = ffipar_obj_live();
  int fds0 = open_fds();
  basics();
  threads(2000 * scale);
  channels(5000 * scale, 4, 0);
  channels(5000 * scale, 1, 0);
  channels(2000 * scale, 64, 0);
  channels(4000 * scale, 4, 1);
  CHECK(ffipar_obj_live() == live0, "live objects %lld, want %lld", (long long)ffipar_obj_live(), (long long)live0);
  CHECK(open_fds() == fds0, "open descriptors %d, want %d", open_fds(), fds0);
  puts("ok");
  return 0;
}
