/*
** channel.c -- bounded channels: many producers, many consumers.
**
** The ring is Dmitry Vyukov's bounded MPMC queue: every slot carries a
** sequence number that says whose turn it is (a producer of round r sees
** seq == pos, a consumer sees seq == pos + 1), so push and pop each take one
** CAS on their own position counter and never a lock. `enq` also carries the
** closed bit, so that a push can never land after close: the CAS compares
** the whole word.
**
** Sleeping: a thread that finds the ring full (empty) registers in the wait
** word not_full (not_empty) with a seq_cst RMW, re-checks, and sleeps on the
** word's generation through futex_wait. The other side publishes its slot
** with a seq_cst exchange, then reads the word (seq_cst). All four are in
** one total order, so either the sleeper's re-check sees the item or the
** publisher sees the sleeper (Dekker's pattern, with no separate fence: on
** x86 the exchange is the one locked instruction). The publisher that wakes
** a generation also zeroes its sleeper count in the same CAS, so the pushes
** that follow, before the sleepers get to run, make no system call: on a
** loaded machine that is the difference between one wake per burst and one
** per item. Slot seq loads are seq_cst for the same reason (a plain load on
** x86). Selectors sleep on a word of their own, registered in every channel
** they watch (sel_count tells publishers to look).
**
** The readiness descriptor (ch:fd()) is a watcher too: FD_ARMED, the top bit
** of sel_count, says "the eventfd is not readable, the next publisher must
** signal it", so push pays nothing for it beyond the load it already does.
** Under fd_lock, FD_ARMED is set exactly when the eventfd is not readable:
** fd_fire clears it and signals, fd_rearm resets the eventfd and sets it.
** A push publishes (seq_cst), then loads sel_count (seq_cst); fd_rearm
** sets FD_ARMED (a seq_cst RMW), then looks for an item or close (seq_cst
** loads): Dekker again, so either the push sees FD_ARMED and fires, or the
** re-check sees its item and fires. Close fires under fd_lock before it
** lets pops report "closed" (see ffipar_channel_close). A consumer re-arms after a
** pop that leaves the channel empty or finds it empty, so the descriptor is
** readable about when pop(0) would succeed; another consumer may take the
** item first (a pop(0) then finds nothing, and re-arms). Pop pays one
** relaxed load of evfd for this, on a cache line it has just written.
**
** Cache lines: an untyped slot is one line, written by the producer, then
** read and freed (the seq exchange) by the consumer. When a consumer is
** the slower side the ring is full, and two things used to cost it a
** cross-core wait per item: the producer, waiting for room, read the very
** slot the consumer popped next, so the consumer's read found the line
** shared and its exchange had to take it back; and the consumer's read
** itself missed. Now a producer that finds the ring full waits for a few
** slots of room, reading only the last of them (wait_room), and a pop asks
** for the line two slots ahead, to be written (prefetch_own): the next pops
** find their slots on their own core, owned. Both are hints: no order
** depends on them.
*/
#include "shim.h"
#include <sched.h>
#include <stdalign.h>

#define CLOSED_BIT (1ULL << 63)
/* Tries before a waiter sleeps: a futex round trip costs microseconds, an
** item usually arrives within a few hundred nanoseconds. */
#define SPIN 100
/* A producer that finds the ring full waits until the consumers have freed
** ROOM slots (a quarter of the ring at most), for up to ROOM_SPIN looks,
** 4 pauses apart (see wait_room). */
#define ROOM 8
#define ROOM_SPIN 32
#define SELECT_STACK 16
#define RING_MAX (1ULL << 30)     /* bytes of slots per channel */

/* A wait word: the high 32 bits are the generation (the futex word that
** sleepers wait on), the low 32 bits how many registered in it. */
typedef _Atomic uint64_t waitword;
#define GEN_ONE (1ULL << 32)

static inline _Atomic uint32_t *gen_of(waitword *w)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (_Atomic uint32_t *)((char *)w + 4);
#else
  return (_Atomic uint32_t *)w;
#endif
}

/* A selector: ev is its futex word; armed says it is about to sleep. */
struct selector {
  _Atomic uint32_t ev;
  _Atomic uint32_t armed;
};

struct sel_node {
  struct selector *sel;
  struct sel_node *prev, *next;
};

struct ffipar_channel {
  ffipar_obj hdr;
  uint64_t cap;                      /* the bound the user asked for */
  uint64_t nslots;                   /* >= 2 (the ring needs two); = cap unless cap is 1 */
  uint64_t mask;                     /* nslots - 1 when a power of two, else 0 */
  size_t size, off, stride;          /* item bytes; their offset in a slot; slot bytes */
  int untyped;
  char *slots;
  alignas(64) _Atomic uint64_t enq;  /* next push position | CLOSED_BIT */
  alignas(64) _Atomic uint64_t deq;  /* next pop position */
  _Atomic int evfd;                  /* the readiness descriptor, or -1 (none) or -2 (closed) */
  alignas(64) _Atomic uint32_t closed;     /* mirrors CLOSED_BIT, for consumers that
                                           ** find the ring empty: reading it never
                                           ** pulls enq's line away from producers */
  alignas(64) waitword not_empty;    /* consumers sleep here */
  waitword not_full;                 /* producers sleep here */
  _Atomic uint32_t sel_count;        /* registered selector nodes | FD_ARMED */
  alignas(64) pthread_mutex_t sel_lock;   /* guards the selector list */
  struct sel_node *sel_head;
  pthread_mutex_t fd_lock;           /* orders firing and re-arming evfd */
};

#define FD_ARMED (1u << 31)

typedef struct { _Atomic uint64_t seq; } slot_hdr;

static inline slot_hdr *slot_at(const ffipar_channel *c, uint64_t pos)
{
  uint64_t i = c->mask ? (pos & c->mask) : (pos % c->nslots);
  return (slot_hdr *)(c->slots + i * c->stride);
}

/* An untyped slot: seq, its byte buffer (or NULL), then the ffipar_value,
** 64 bytes: one cache line carries the item and the buffer's address. */
#define UNTYPED_OFF 16
_Static_assert(UNTYPED_OFF + sizeof(ffipar_value) == 64, "an untyped slot is one cache line");

static inline ffipar_channel_buf **slot_buf(slot_hdr *s)
{
  return (ffipar_channel_buf **)((char *)s + 8);
}

static inline char *slot_data(const ffipar_channel *c, slot_hdr *s)
{
  return (char *)s + c->off;
}

/* Copy an item: fixed sizes become plain moves instead of a libc call. */
static inline __attribute__((always_inline)) void copy_item(void *dst, const void *src, size_t n)
{
  switch (n) {
  case 8: memcpy(dst, src, 8); break;
  case 16: memcpy(dst, src, 16); break;
  case 24: memcpy(dst, src, 24); break;
  case 32: memcpy(dst, src, 32); break;
  case sizeof(ffipar_value): memcpy(dst, src, sizeof(ffipar_value)); break;
  default: memcpy(dst, src, n);
  }
}

/* ---- slot buffers (see ffipar_channel_buf) ----
** A slot's buffer is touched only by the thread that has claimed the slot
** (CAS on enq or deq) and before it publishes the slot's seq: the seq
** exchange that publishes the item (or frees the slot) orders the bytes and
** the pointer for the next owner, as it does the item itself. */

static _Atomic int64_t bufs_live;

ffipar_channel_buf *ffipar_channel_buf_new(size_t cap)
{
  if (cap < 1 || cap > FFIPAR_BUF_MAX) return NULL;
  ffipar_channel_buf *b = malloc(sizeof(*b) + cap);
  if (!b) return NULL;
  b->data = (char *)(b + 1);           /* take_bytes relies on this */
  b->cap = cap;
  /* Relaxed: a count for tests, read when the threads are done. */
  atomic_fetch_add_explicit(&bufs_live, 1, memory_order_relaxed);
  return b;
}

void ffipar_channel_buf_free(ffipar_channel_buf *b)
{
  if (!b) return;
  atomic_fetch_sub_explicit(&bufs_live, 1, memory_order_relaxed);
  free(b);
}

int64_t ffipar_channel_bufs_live(void)
{
  return atomic_load_explicit(&bufs_live, memory_order_relaxed);
}

static inline int is_bytes(uint32_t tag)
{
  return tag == FFIPAR_VBSTR || tag == FFIPAR_VBENC;
}

/* An untyped item that can never go in (checked before claiming a slot). */
static inline int bad_bytes(const ffipar_channel *c, const void *item)
{
  const ffipar_value *v = item;
  return c->untyped && is_bytes(v->tag) &&
    (v->len > FFIPAR_BUF_MAX || !v->u.b.buf || v->u.b.buf->cap < v->len);
}

/* The claimed slot s takes the pushed bytes, into its own buffer. A slot
** with none, or one too small, gets a new one (a power of two from 128
** bytes); if there is no memory for it, the pusher's spare goes in instead
** (the pusher gets the slot's old buffer, or NULL, back in u.b.buf), so a
** claimed slot never fails. */
static __attribute__((noinline)) ffipar_channel_buf *new_slot_buf(slot_hdr *s, ffipar_value *v)
{
  ffipar_channel_buf **b = slot_buf(s), *old = *b;
  size_t cap = 128;
  while (cap < v->len) cap *= 2;
  ffipar_channel_buf *grown = ffipar_channel_buf_new(cap);
  if (grown) {
    ffipar_channel_buf_free(old);
    *b = grown;
  } else {
    *b = v->u.b.buf;
    v->u.b.buf = old;
  }
  return *b;
}

static inline void put_bytes(slot_hdr *s, ffipar_value *v)
{
  ffipar_channel_buf *mine = *slot_buf(s);
  if (!mine || mine->cap < v->len) mine = new_slot_buf(s, v);
  memcpy(mine->data, v->u.b.data, v->len);
}

/* The claimed slot s gives its buffer (holding the popped bytes) to the
** popper, and takes `spare` (the popper's, or NULL) in exchange. */
static inline void take_bytes(slot_hdr *s, ffipar_value *v, ffipar_channel_buf *spare)
{
  ffipar_channel_buf **b = slot_buf(s);
  v->u.b.buf = *b;
  v->u.b.data = (char *)(*b + 1);      /* its data (no load from the buffer here) */
  *b = spare;
}

/* ---- flat tables in string.buffer's format ----
** A table is a tag 0x08 + bits (1: a hash part, 2: an array part from
** index 0, 4: from index 1), then the array length and the hash count as
** U124 numbers, then the array's values and the hash's key, value pairs.
** A scalar is 0x00 nil, 0x01 false, 0x02 true, 0x06 + 4 bytes (int),
** 0x07 + 8 bytes (double), or a string: U124 0x20 + len, then its bytes.
** U124: one byte below 0xe0; 0xe0..0xfe: 13 bits and one more byte, plus
** 0xe0; 0xff: 4 bytes little-endian. */

static const unsigned char *read_u124(const unsigned char *r, const unsigned char *e, uint32_t *v)
{
  if (r >= e) return NULL;
  uint32_t x = *r++;
  if (x == 0xff) {
    if (e - r < 4) return NULL;
    x = (uint32_t)r[0] | (uint32_t)r[1] << 8 | (uint32_t)r[2] << 16 | (uint32_t)r[3] << 24;
    r += 4;
  } else if (x >= 0xe0) {
    if (r >= e) return NULL;
    x = ((x & 0x1f) << 8) + *r++ + 0xe0;
  }
  *v = x;
  return r;
}

static const unsigned char *skip_scalar(const unsigned char *r, const unsigned char *e)
{
  uint32_t tag = *r;               /* r < e: the caller checked */
  size_t more;
  if (tag >= 0x20 && tag < 0xe0) {  /* the common cases first: a short string, */
    r++;
    more = tag - 0x20;
  } else if (tag == 0x07) {         /* a double */
    r++;
    more = 8;
  } else if (tag <= 0x02 || tag == 0x06) {
    r++;
    more = tag == 0x06 ? 4 : 0;
  } else {                          /* a long string, or no scalar */
    if (!(r = read_u124(r, e, &tag)) || tag < 0x20) return NULL;
    more = tag - 0x20;
  }
  return (size_t)(e - r) >= more ? r + more : NULL;
}

int ffipar_channel_flat(const char *data, size_t n)
{
  const unsigned char *r = (const unsigned char *)data, *e = r + n;
  if (n == 0 || r[0] < 0x08 || r[0] > 0x0d) return 0;
  unsigned bits = *r++ - 0x08u;
  uint32_t narray = 0, nhash = 0;
  if (bits & 6) {
    if (!(r = read_u124(r, e, &narray))) return 0;
    if ((bits & 4) && narray-- == 0) return 0;
  }
  if ((bits & 1) && !(r = read_u124(r, e, &nhash))) return 0;
  for (uint64_t i = 0; i < narray + 2 * (uint64_t)nhash; i++)
    if (r >= e || !(r = skip_scalar(r, e))) return 0;
  return r == e;
}

/* One push attempt: OK, ETIMEOUT (full) or ECLOSED. */
static inline __attribute__((always_inline)) int try_push(ffipar_channel *c, void *item)
{
  /* Relaxed: the position is only a guess until the CAS; the slot's seq
  ** (acquire) is what orders our write after the previous consumer's read. */
  uint64_t pos = atomic_load_explicit(&c->enq, memory_order_relaxed);
  for (;;) {
    if (pos & CLOSED_BIT) return FFIPAR_ECLOSED;
    slot_hdr *s = slot_at(c, pos);
    uint64_t seq = atomic_load(&s->seq);   /* seq_cst: see the top */
    int64_t dif = (int64_t)(seq - pos);
    if (dif == 0) {
      if (c->nslots != c->cap) {
        /* cap 1 runs on two slots; the bound is then checked by count.
        ** A stale deq only makes us report "full" and re-check. */
        uint64_t d = atomic_load(&c->deq);
        if (pos - d >= c->cap) return FFIPAR_ETIMEOUT;
      }
      if (atomic_compare_exchange_weak_explicit(&c->enq, &pos, pos + 1,
            memory_order_relaxed, memory_order_relaxed)) {
        copy_item(slot_data(c, s), item, c->size);
        if (c->untyped && is_bytes(((ffipar_value *)item)->tag))
          put_bytes(s, item);
        /* seq_cst exchange: releases the item to the consumer that sees
        ** seq == pos + 1, and orders it before after_push's waiter check. */
        atomic_exchange(&s->seq, pos + 1);
        return FFIPAR_OK;
      }
    } else if (dif < 0) {
      return FFIPAR_ETIMEOUT;
    } else {
      pos = atomic_load_explicit(&c->enq, memory_order_relaxed);
    }
  }
}

/* Ask for the cache line at p, to be written: the next pops find their
** slots on this core already, owned, so neither the read of the item nor
** the exchange that frees the slot waits for the other core. A hint only
** (a slot still being written is only fetched early, then taken back). */
#define PREFETCH 2
static inline void prefetch_own(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
  __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
#else
  __builtin_prefetch(p, 1, 3);
#endif
}

/* One pop attempt: OK, ETIMEOUT (empty), ECLOSED (closed and drained) or
** EBUSY (closed, but a push that claimed a slot before close has not
** published it yet: retry soon, it is a few instructions away). */
static inline __attribute__((always_inline)) int try_pop(ffipar_channel *c, void *out)
{
  uint64_t pos = atomic_load_explicit(&c->deq, memory_order_relaxed);
  for (;;) {
    slot_hdr *s = slot_at(c, pos);
    uint64_t seq = atomic_load(&s->seq);   /* seq_cst: see the top */
    int64_t dif = (int64_t)(seq - (pos + 1));
    if (dif == 0) {
      if (atomic_compare_exchange_weak_explicit(&c->deq, &pos, pos + 1,
            memory_order_relaxed, memory_order_relaxed)) {
        if (c->untyped) {
          /* The buffer the popper offers, read before the copy overwrites it. */
          ffipar_value *v = out;
          ffipar_channel_buf *spare = v->tag == FFIPAR_VSPARE ? v->u.b.buf : NULL;
          copy_item(out, slot_data(c, s), c->size);
          if (is_bytes(v->tag)) take_bytes(s, v, spare);
        } else {
          copy_item(out, slot_data(c, s), c->size);
        }
        /* seq_cst exchange: the producer of the next round sees our read
        ** done, and it is ordered before after_pop's waiter check. */
        atomic_exchange(&s->seq, pos + c->nslots);
        prefetch_own(slot_at(c, pos + PREFETCH));
        return FFIPAR_OK;
      }
    } else if (dif < 0) {
      if (!atomic_load(&c->closed)) return FFIPAR_ETIMEOUT;
      /* Closed: close set the bit in enq before the flag, so e counts every
      ** push that will ever be claimed. */
      uint64_t e = atomic_load(&c->enq);
      return (e & ~CLOSED_BIT) == pos ? FFIPAR_ECLOSED : FFIPAR_EBUSY;
    } else {
      pos = atomic_load_explicit(&c->deq, memory_order_relaxed);
    }
  }
}

/* Wake every sleeper of the current generation, if it has any: the CAS
** that starts the next generation also zeroes its count, so only one of
** several racing publishers makes the system call. */
static __attribute__((noinline)) void wake_gen(waitword *w)
{
  uint64_t cur = atomic_load(w);
  while ((uint32_t)cur != 0) {
    uint64_t next = ((cur >> 32) + 1) << 32;
    if (atomic_compare_exchange_weak(w, &cur, next)) {
      futex_wake(gen_of(w), 0x7fffffff);
      return;
    }
  }
}

/* An item or close is there for pop(0). Seq_cst loads (see the top); a
** stale deq only sends us round again. */
static int ready(ffipar_channel *c)
{
  if (atomic_load(&c->enq) & CLOSED_BIT) return 1;
  uint64_t pos = atomic_load(&c->deq);
  for (;;) {
    uint64_t seq = atomic_load(&slot_at(c, pos)->seq);
    int64_t dif = (int64_t)(seq - (pos + 1));
    if (dif == 0) return 1;
    if (dif < 0) return 0;
    pos = atomic_load(&c->deq);
  }
}

/* Make the descriptor readable if it is armed. Under fd_lock so that a
** signal never lands between a re-arm's reset and its FD_ARMED. */
static __attribute__((noinline)) void fd_fire(ffipar_channel *c)
{
  pthread_mutex_lock(&c->fd_lock);
  /* FD_ARMED is never set once the descriptor is closed. */
  if (atomic_fetch_and(&c->sel_count, ~FD_ARMED) & FD_ARMED)
    fd_signal(atomic_load_explicit(&c->evfd, memory_order_relaxed));
  pthread_mutex_unlock(&c->fd_lock);
}

/* A consumer found the channel empty: reset the descriptor and arm it, then
** fire it again if an item or close came meanwhile. The unlocked look at
** FD_ARMED skips the lock when it is already armed; a fire racing with it
** can leave the descriptor readable on an empty channel, which the pop(0)
** that readiness leads to re-arms. */
static __attribute__((noinline)) void fd_rearm(ffipar_channel *c)
{
  if (atomic_load(&c->sel_count) & FD_ARMED) return;
  pthread_mutex_lock(&c->fd_lock);
  int fd = atomic_load_explicit(&c->evfd, memory_order_relaxed);
  /* Nothing to reset while an item or close is there: a re-arm that began
  ** before a close must not reset the descriptor after it. */
  if (fd >= 0 && !(atomic_load(&c->sel_count) & FD_ARMED) && !ready(c)) {
    fd_reset(fd);
    atomic_fetch_or(&c->sel_count, FD_ARMED);
    if (ready(c)) {
      atomic_fetch_and(&c->sel_count, ~FD_ARMED);
      fd_signal(fd);
    }
  }
  pthread_mutex_unlock(&c->fd_lock);
}

static void wake_selectors(ffipar_channel *c)
{
  pthread_mutex_lock(&c->sel_lock);
  for (struct sel_node *n = c->sel_head; n; n = n->next) {
    /* Only a selector that armed itself since its last wake needs one. */
    if (atomic_exchange(&n->sel->armed, 0)) {
      atomic_fetch_add(&n->sel->ev, 1);
      futex_wake(&n->sel->ev, 1);
    }
  }
  pthread_mutex_unlock(&c->sel_lock);
}

/* After items went in: wake sleeping consumers and selectors. The loads are
** seq_cst, after the publishing exchange (see the top). */
static inline void after_push(ffipar_channel *c)
{
  if ((uint32_t)atomic_load(&c->not_empty)) wake_gen(&c->not_empty);
  uint32_t watch = atomic_load(&c->sel_count);
  if (watch) {
    if (watch & FD_ARMED) fd_fire(c);
    if (watch & ~FD_ARMED) wake_selectors(c);
  }
}

/* After items went out: wake sleeping producers; with a descriptor, re-arm
** it if the channel is now empty. Relaxed load of evfd: it is set once, and
** its creator armed it itself; missing it here only leaves it readable for
** a pop(0) to re-arm. */
static inline void after_pop(ffipar_channel *c)
{
  if ((uint32_t)atomic_load(&c->not_full)) wake_gen(&c->not_full);
  if (atomic_load_explicit(&c->evfd, memory_order_relaxed) >= 0 && !ready(c)) fd_rearm(c);
}

/* A pop found nothing (timeout): with a descriptor, that consumes a
** readiness another consumer beat us to. */
static inline void after_empty_pop(ffipar_channel *c, int rc)
{
  if (rc == FFIPAR_ETIMEOUT && atomic_load_explicit(&c->evfd, memory_order_relaxed) >= 0)
    fd_rearm(c);
}

typedef int (*op_fn)(ffipar_channel *, void *);

static int push_op(ffipar_channel *c, void *p) { return try_push(c, p); }
static int pop_op(ffipar_channel *c, void *p) { return try_pop(c, p); }

/* Run `op` until it succeeds, the channel is closed, the deadline passes or
** the caller is cancelled, sleeping in the wait word `w`. */
static __attribute__((noinline)) int wait_op(ffipar_channel *c, op_fn op, void *p,
                                             waitword *w, double timeout)
{
  int rc = op(c, p);
  /* A poll (timeout 0) does not spin: it answers for the state right now. */
  for (int i = 0; timeout != 0 && i < SPIN && (rc == FFIPAR_ETIMEOUT || rc == FFIPAR_EBUSY); i++) {
    cpu_relax();
    rc = op(c, p);
  }
  int64_t deadline = timeout == 0 ? 0 : deadline_of(timeout);
  for (;;) {
    while (rc == FFIPAR_EBUSY) { sched_yield(); rc = op(c, p); }
    if (rc != FFIPAR_ETIMEOUT || deadline == 0) return rc;
    /* seq_cst RMW: our registration precedes the re-check's seq_cst loads
    ** in the total order (Dekker, see the top). If the re-check succeeds we
    ** stay counted: it costs the next publisher one needless wake, no more.
    ** Wakes go to the whole generation, so none is lost to a sleeper that
    ** times out or is cancelled instead of taking the item. */
    uint64_t reg = atomic_fetch_add(w, 1);
    rc = op(c, p);
    if (rc != FFIPAR_ETIMEOUT) continue;
    int r = futex_wait(gen_of(w), (uint32_t)(reg >> 32), deadline);
    if (r != FFIPAR_OK) {
      if (r == FFIPAR_ETIMEOUT) {
        rc = op(c, p);                  /* an item that came with the deadline */
        if (rc == FFIPAR_OK || rc == FFIPAR_ECLOSED) return rc;
      }
      return r;
    }
    rc = op(c, p);
  }
}

/* The last reference is gone, so nobody pushes or pops: every claimed slot
** is published. Queued messages are ours to free (with their handles). */
static void channel_destroy(ffipar_obj *o)
{
  ffipar_channel *c = (ffipar_channel *)o;
  if (c->untyped) {
    uint64_t end = atomic_load(&c->enq) & ~CLOSED_BIT;
    for (uint64_t pos = atomic_load(&c->deq); pos < end; pos++) {
      ffipar_value *v = (ffipar_value *)slot_data(c, slot_at(c, pos));
      if (v->tag == FFIPAR_VMSG || v->tag == FFIPAR_VLSTR || v->tag == FFIPAR_VENC)
        ffipar_msg_free(v->u.msg);
    }
    for (uint64_t pos = 0; pos < c->nslots; pos++) ffipar_channel_buf_free(*slot_buf(slot_at(c, pos)));
  }
  pthread_mutex_destroy(&c->sel_lock);
  pthread_mutex_destroy(&c->fd_lock);
  fd_close(atomic_load_explicit(&c->evfd, memory_order_relaxed));   /* last ref: no one else */
  free(c->slots);
  free(c);
}

int ffipar_channel_new(ffipar_channel **out, int64_t cap, size_t size,
                       size_t align, int untyped)
{
  if (cap < 1 || cap > (1LL << 24)) return FFIPAR_EINVAL;
  if (untyped) { size = sizeof(ffipar_value); align = 8; }
  if (size == 0 || size > (1u << 20) || align == 0 || (align & (align - 1)) || align > 64)
    return FFIPAR_EINVAL;
  ffipar_channel *c = cache_alloc(sizeof(*c));
  if (!c) return FFIPAR_ENOMEM;
  c->cap = (uint64_t)cap;
  c->nslots = cap < 2 ? 2 : (uint64_t)cap;
  c->mask = (c->nslots & (c->nslots - 1)) ? 0 : c->nslots - 1;
  c->size = size;
  c->off = untyped ? UNTYPED_OFF : align > 8 ? align : 8;
  size_t a = align > 8 ? align : 8;
  c->stride = (c->off + size + a - 1) & ~(a - 1);
  c->untyped = untyped != 0;
  /* The ring is zeroed and touched whole at creation: bound it. */
  if (c->nslots * c->stride > RING_MAX) { free(c); return FFIPAR_EINVAL; }
  c->slots = cache_alloc(c->nslots * c->stride);
  if (!c->slots) { free(c); return FFIPAR_ENOMEM; }
  for (uint64_t i = 0; i < c->nslots; i++)
    atomic_init(&slot_at(c, i)->seq, i);
  pthread_mutex_init(&c->sel_lock, NULL);
  pthread_mutex_init(&c->fd_lock, NULL);
  atomic_init(&c->evfd, -1);
  obj_init(&c->hdr, FFIPAR_KCHANNEL, channel_destroy);
  *out = c;
  return FFIPAR_OK;
}

/* The ring is full: instead of reading the slot that the consumer pops
** next (its line would go back and forth between the cores on every pop,
** each of our reads undoing the consumer's hold on it), wait until the
** consumers have freed `room` slots, reading only the last of them, a few
** pauses apart. Then the pushes that follow go in a burst, and the consumer
** pops the slots in between untouched. A hint: bounded (ROOM_SPIN * 4
** pauses, about 2 us here, before wait_op starts the timeout's clock), and
** the caller tries the push as before whatever it finds (relaxed load:
** try_push's seq_cst load decides). */
static __attribute__((noinline)) void wait_room(ffipar_channel *c)
{
  uint64_t room = c->cap / 4 < ROOM ? c->cap / 4 : ROOM;
  if (room < 2 || c->nslots != c->cap) return;
  uint64_t last = (atomic_load_explicit(&c->enq, memory_order_relaxed) & ~CLOSED_BIT) + room - 1;
  slot_hdr *s = slot_at(c, last);
  for (int i = 0; i < ROOM_SPIN; i++) {
    if ((int64_t)(atomic_load_explicit(&s->seq, memory_order_relaxed) - last) >= 0) return;
    cpu_relax();
    cpu_relax();
    cpu_relax();
    cpu_relax();
  }
}

/* `item` is writable when it is an untyped bytes item (see ffipar.h). */
int ffipar_channel_push(ffipar_channel *c, const void *item, double timeout)
{
  if (bad_bytes(c, item)) return FFIPAR_EINVAL;
  int rc = try_push(c, (void *)item);     /* the fast path, inline */
  if (rc == FFIPAR_ETIMEOUT && timeout != 0) {
    wait_room(c);
    rc = try_push(c, (void *)item);
  }
  if (rc != FFIPAR_OK && rc != FFIPAR_ECLOSED)
    rc = wait_op(c, push_op, (void *)item, &c->not_full, timeout);
  if (rc == FFIPAR_OK) after_push(c);
  return rc;
}

int ffipar_channel_pop(ffipar_channel *c, void *out, double timeout)
{
  int rc = try_pop(c, out);
  if (rc != FFIPAR_OK && rc != FFIPAR_ECLOSED)
    rc = wait_op(c, pop_op, out, &c->not_empty, timeout);
  if (rc == FFIPAR_OK) after_pop(c);
  else after_empty_pop(c, rc);
  return rc;
}

int ffipar_channel_push_many(ffipar_channel *c, const void *items, int n,
                             double timeout)
{
  if (n < 1) return FFIPAR_EINVAL;
  char *p = (char *)items;      /* writable when untyped bytes (see ffipar.h) */
  for (int i = 0; i < n; i++)
    if (bad_bytes(c, p + (size_t)i * c->size)) return FFIPAR_EINVAL;
  int rc = wait_op(c, push_op, (void *)p, &c->not_full, timeout);
  if (rc != FFIPAR_OK) return rc;
  int k = 1;
  while (k < n && try_push(c, (void *)(p + (size_t)k * c->size)) == FFIPAR_OK) k++;
  after_push(c);
  return k;
}

int ffipar_channel_pop_many(ffipar_channel *c, void *out, int n, double timeout)
{
  if (n < 1) return FFIPAR_EINVAL;
  char *p = out;
  int rc = wait_op(c, pop_op, p, &c->not_empty, timeout);
  if (rc != FFIPAR_OK) { after_empty_pop(c, rc); return rc; }
  int k = 1;
  while (k < n && try_pop(c, p + (size_t)k * c->size) == FFIPAR_OK) k++;
  after_pop(c);
  return k;
}

void ffipar_channel_close(ffipar_channel *c)
{
  /* seq_cst RMW: a waiter whose re-check missed the bit read its event
  ** counter before the bumps below, so its futex_wait returns. */
  uint64_t old = atomic_fetch_or(&c->enq, CLOSED_BIT);
  if (old & CLOSED_BIT) return;
  /* The descriptor first: a pop sees ECLOSED only after `closed` below, so
  ** it then finds the descriptor readable. Under fd_lock (fd_fire), after a
  ** re-arm or a creation in progress: one that missed the bit above left
  ** FD_ARMED for us to fire. Seq_cst load, after the fetch_or, against the
  ** creator's seq_cst store of evfd then load of enq (Dekker). */
  if (atomic_load(&c->evfd) >= 0) fd_fire(c);
  atomic_store(&c->closed, 1);
  atomic_fetch_add(&c->not_empty, GEN_ONE);
  futex_wake(gen_of(&c->not_empty), 0x7fffffff);
  atomic_fetch_add(&c->not_full, GEN_ONE);
  futex_wake(gen_of(&c->not_full), 0x7fffffff);
  pthread_mutex_lock(&c->sel_lock);
  for (struct sel_node *n = c->sel_head; n; n = n->next) {
    atomic_fetch_add(&n->sel->ev, 1);
    futex_wake(&n->sel->ev, 1);
  }
  pthread_mutex_unlock(&c->sel_lock);
}

int ffipar_channel_closed(const ffipar_channel *c)
{
  return (atomic_load((_Atomic uint64_t *)&c->enq) & CLOSED_BIT) != 0;
}

int64_t ffipar_channel_len(const ffipar_channel *c)
{
  /* A snapshot: the two loads are not one instant, so clamp. */
  uint64_t d = atomic_load_explicit((_Atomic uint64_t *)&c->deq, memory_order_acquire);
  uint64_t e = atomic_load_explicit((_Atomic uint64_t *)&c->enq, memory_order_acquire) & ~CLOSED_BIT;
  int64_t n = (int64_t)(e - d);
  if (n < 0) return 0;
  return n > (int64_t)c->cap ? (int64_t)c->cap : n;
}

int64_t ffipar_channel_cap(const ffipar_channel *c)
{
  return (int64_t)c->cap;
}

size_t ffipar_channel_size(const ffipar_channel *c)
{
  return c->size;
}

int ffipar_channel_fd(ffipar_channel *c, int *out)
{
  pthread_mutex_lock(&c->fd_lock);
  int fd = atomic_load_explicit(&c->evfd, memory_order_relaxed);
  if (fd == -1) {
    fd = fd_new();
    if (fd < 0) { pthread_mutex_unlock(&c->fd_lock); return FFIPAR_ESYS; }
    atomic_store(&c->evfd, fd);          /* seq_cst: see ffipar_channel_close */
    /* Armed first, then the look for what is already there (see the top). */
    atomic_fetch_or(&c->sel_count, FD_ARMED);
    if (ready(c)) {
      atomic_fetch_and(&c->sel_count, ~FD_ARMED);
      fd_signal(fd);
    }
  }
  pthread_mutex_unlock(&c->fd_lock);
  if (fd < 0) return FFIPAR_ECLOSED;
  *out = fd;
  return FFIPAR_OK;
}

int ffipar_channel_fd_close(ffipar_channel *c)
{
  pthread_mutex_lock(&c->fd_lock);
  int fd = atomic_load_explicit(&c->evfd, memory_order_relaxed);
  /* Relaxed: fires and re-arms look again under fd_lock; with FD_ARMED
  ** cleared, publishers stop calling fd_fire. */
  atomic_store_explicit(&c->evfd, -2, memory_order_relaxed);
  atomic_fetch_and(&c->sel_count, ~FD_ARMED);
  pthread_mutex_unlock(&c->fd_lock);
  fd_close(fd);
  return FFIPAR_OK;
}

/* ---- select ---- */

/* One look at every channel, starting at `start`: OK (popped from
** *which), ECLOSED (none has an item, *which is closed and drained), EBUSY
** (a closed channel still has an item on its way), ETIMEOUT (nothing). */
static int scan(ffipar_channel *const *chs, int n, void *out, int *which,
                unsigned start)
{
  int closed = -1, busy = 0;
  for (int k = 0; k < n; k++) {
    int i = (int)((start + (unsigned)k) % (unsigned)n);
    int rc = try_pop(chs[i], out);
    if (rc == FFIPAR_OK) { *which = i; return FFIPAR_OK; }
    if (rc == FFIPAR_ECLOSED && closed < 0) closed = i;
    if (rc == FFIPAR_EBUSY) busy = 1;
  }
  if (busy) return FFIPAR_EBUSY;
  if (closed >= 0) { *which = closed; return FFIPAR_ECLOSED; }
  return FFIPAR_ETIMEOUT;
}

static _Thread_local unsigned rotation;

int ffipar_channel_select(ffipar_channel *const *chs, int n, void *out,
                          int *which, double timeout)
{
  if (n < 1) return FFIPAR_EINVAL;
  unsigned start = rotation++;
  int rc = scan(chs, n, out, which, start);
  for (int i = 0; timeout != 0 && i < SPIN && (rc == FFIPAR_ETIMEOUT || rc == FFIPAR_EBUSY); i++) {
    cpu_relax();
    rc = scan(chs, n, out, which, start);
  }
  int64_t deadline = timeout == 0 ? 0 : deadline_of(timeout);
  while (rc == FFIPAR_EBUSY) { sched_yield(); rc = scan(chs, n, out, which, start); }
  if (rc == FFIPAR_ETIMEOUT && deadline != 0) {
    struct sel_node stack[SELECT_STACK], *nodes = stack;
    if (n > SELECT_STACK) {
      nodes = malloc((size_t)n * sizeof(*nodes));
      if (!nodes) return FFIPAR_ENOMEM;
    }
    struct selector self;
    atomic_init(&self.ev, 0);
    atomic_init(&self.armed, 0);
    for (int i = 0; i < n; i++) {
      ffipar_channel *c = chs[i];
      nodes[i].sel = &self;
      nodes[i].prev = NULL;
      pthread_mutex_lock(&c->sel_lock);
      nodes[i].next = c->sel_head;
      if (c->sel_head) c->sel_head->prev = &nodes[i];
      c->sel_head = &nodes[i];
      atomic_fetch_add(&c->sel_count, 1);
      pthread_mutex_unlock(&c->sel_lock);
    }
    /* Each registration is a seq_cst RMW before every re-scan (Dekker, as
    ** in wait_op): a publisher that our scan misses sees sel_count > 0. */
    for (;;) {
      /* Read the counter, then arm: a publisher that finds us armed bumps
      ** it after our read, so the sleep below cannot miss its item. */
      uint32_t seen = atomic_load(&self.ev);
      atomic_store(&self.armed, 1);
      rc = scan(chs, n, out, which, start);
      if (rc == FFIPAR_EBUSY) { sched_yield(); continue; }
      if (rc != FFIPAR_ETIMEOUT) break;
      int w = futex_wait(&self.ev, seen, deadline);
      if (w != FFIPAR_OK) {
        if (w == FFIPAR_ETIMEOUT) {
          rc = scan(chs, n, out, which, start);
          if (rc == FFIPAR_OK || rc == FFIPAR_ECLOSED) break;
        }
        rc = w;
        break;
      }
    }
    /* Unlink under each lock: once we return, no publisher touches `self`. */
    for (int i = 0; i < n; i++) {
      ffipar_channel *c = chs[i];
      pthread_mutex_lock(&c->sel_lock);
      if (nodes[i].prev) nodes[i].prev->next = nodes[i].next;
      else c->sel_head = nodes[i].next;
      if (nodes[i].next) nodes[i].next->prev = nodes[i].prev;
      atomic_fetch_sub(&c->sel_count, 1);
      pthread_mutex_unlock(&c->sel_lock);
    }
    if (nodes != stack) free(nodes);
  }
  if (rc == FFIPAR_OK) after_pop(chs[*which]);
  return rc;
}
