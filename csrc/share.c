/*
** share.c -- par.share: a read-only snapshot of a Lua table. The object
** holds the encoded message, written before the object is published and
** never changed after, so any state may read it without a lock; it counts
** the states that decoded it (a statistic, for tests and tuning).
*/
#include "shim.h"

struct ffipar_share {
  ffipar_obj hdr;
  ffipar_msg *msg;               /* immutable once created; NULL: a stream */
  int64_t n;
  _Atomic int64_t decodes;
  _Atomic int64_t chunks;        /* chunks decoded, all states together */
  /* A stream (one sender, one receiver): parts[0, nparts) are published;
  ** then the verdict, and with FFIPAR_STREAM_WHOLE the message `whole`. */
  int64_t cap, len;
  ffipar_msg **parts;
  ffipar_msg *whole;
  _Atomic int64_t nparts;
  _Atomic int32_t verdict;
  _Atomic uint32_t seq;          /* futex word: bumped by each put and end */
  /* A lazy snapshot (made at first use): msg set by make, or the parts
  ** opened, ended and sealed with an index (in `whole`); `sealed` is
  ** released after the parts and the index are written. */
  int lazy, opened;
  _Atomic int32_t sealed;
};

static void share_destroy(ffipar_obj *o)
{
  ffipar_share *s = (ffipar_share *)o;
  ffipar_msg_free(s->msg);
  int64_t n = atomic_load_explicit(&s->nparts, memory_order_relaxed);  /* last reference */
  for (int64_t i = 0; i < n; i++) ffipar_msg_free(s->parts[i]);
  free(s->parts);
  ffipar_msg_free(s->whole);
  free(s);
}

int ffipar_share_stream(ffipar_share **out, int64_t cap, int64_t n, int64_t len)
{
  if (cap < 0 || n < 0 || len < 0) return FFIPAR_EINVAL;
  ffipar_share *s = cache_alloc(sizeof(*s));
  if (!s) return FFIPAR_ENOMEM;
  s->parts = calloc(cap > 0 ? (size_t)cap : 1, sizeof(*s->parts));
  if (!s->parts) { free(s); return FFIPAR_ENOMEM; }
  obj_init(&s->hdr, FFIPAR_KSHARE, share_destroy);
  s->cap = cap;
  s->n = n;
  s->len = len;
  *out = s;
  return FFIPAR_OK;
}

/* The slot is written before nparts is released: a receiver that sees the
** count (acquire) sees the part. Seq_cst on seq, so the receiver's check
** after reading seq cannot miss a put that came before the wake. */
int ffipar_share_put(ffipar_share *s, ffipar_msg *m)
{
  int64_t n = atomic_load_explicit(&s->nparts, memory_order_relaxed);  /* one sender */
  if (!m || s->msg || n >= s->cap || atomic_load(&s->verdict) != 0) {
    ffipar_msg_free(m);
    return FFIPAR_EINVAL;
  }
  s->parts[n] = m;
  atomic_store_explicit(&s->nparts, n + 1, memory_order_release);
  atomic_fetch_add(&s->seq, 1);
  futex_wake(&s->seq, INT32_MAX);
  return FFIPAR_OK;
}

/* `whole` (owned from here, may be NULL) is written before the verdict is
** released: a receiver that sees FFIPAR_STREAM_WHOLE sees it. */
int ffipar_share_end(ffipar_share *s, int32_t verdict, ffipar_msg *whole)
{
  if (s->msg || verdict < FFIPAR_STREAM_DONE || verdict > FFIPAR_STREAM_ABANDONED
      || atomic_load(&s->verdict) != 0 || (verdict == FFIPAR_STREAM_WHOLE) != (whole != NULL)) {
    ffipar_msg_free(whole);
    return FFIPAR_EINVAL;
  }
  s->whole = whole;
  atomic_store_explicit(&s->verdict, verdict, memory_order_release);
  atomic_fetch_add(&s->seq, 1);
  futex_wake(&s->seq, INT32_MAX);
  return FFIPAR_OK;
}

int ffipar_share_wait(ffipar_share *s, int64_t i, double timeout)
{
  int64_t deadline = deadline_of(timeout);
  for (;;) {
    uint32_t seq = atomic_load(&s->seq);
    if (atomic_load(&s->nparts) > i || atomic_load(&s->verdict) != 0) return FFIPAR_OK;
    int rc = futex_wait(&s->seq, seq, deadline);
    if (rc != FFIPAR_OK) return rc;
  }
}

/* Acquire: pairs with the releases in put and end. */
int32_t ffipar_share_verdict(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int32_t *)&s->verdict, memory_order_acquire);
}

int64_t ffipar_share_nparts(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int64_t *)&s->nparts, memory_order_acquire);
}

const ffipar_msg *ffipar_share_part(const ffipar_share *s, int64_t i)
{
  if (i < 0 || i >= ffipar_share_nparts(s)) return NULL;
  return s->parts[i];
}

const ffipar_msg *ffipar_share_whole(const ffipar_share *s)
{
  return ffipar_share_verdict(s) == FFIPAR_STREAM_WHOLE ? s->whole : NULL;
}

int64_t ffipar_share_arraylen(const ffipar_share *s)
{
  return s->len;
}

int ffipar_share_lazy(ffipar_share **out)
{
  int rc = ffipar_share_stream(out, 0, 0, 0);
  if (rc == FFIPAR_OK) (*out)->lazy = 1;
  return rc;
}

static void free_parts(ffipar_share *s)
{
  int64_t n = atomic_load_explicit(&s->nparts, memory_order_relaxed);   /* the owner's */
  for (int64_t i = 0; i < n; i++) ffipar_msg_free(s->parts[i]);
  atomic_store_explicit(&s->nparts, 0, memory_order_relaxed);
  ffipar_msg_free(s->whole);
  s->whole = NULL;
}

int ffipar_share_make(ffipar_share *s, ffipar_msg *msg, int64_t n)
{
  if (!msg || n < 0 || !s->lazy || s->msg || atomic_load(&s->sealed)) {
    ffipar_msg_free(msg);
    return FFIPAR_EINVAL;
  }
  free_parts(s);
  s->n = n;
  s->msg = msg;
  return FFIPAR_OK;
}

int ffipar_share_open(ffipar_share *s, int64_t cap, int64_t n)
{
  if (!s->lazy || s->msg || s->opened || cap < 0 || n < 0) return FFIPAR_EINVAL;
  ffipar_msg **p = realloc(s->parts, (cap > 0 ? (size_t)cap : 1) * sizeof(*p));
  if (!p) return FFIPAR_ENOMEM;
  s->parts = p;
  s->cap = cap;
  s->n = n;
  s->opened = 1;
  return FFIPAR_OK;
}

int ffipar_share_seal(ffipar_share *s, ffipar_msg **more, int64_t k, ffipar_msg *index)
{
  int ok = s->lazy && s->opened && !s->msg && index && k >= 0
        && atomic_load(&s->verdict) == FFIPAR_STREAM_DONE && !atomic_load(&s->sealed);
  int64_t n = atomic_load_explicit(&s->nparts, memory_order_relaxed);  /* ended: no more puts */
  ffipar_msg **p = ok ? realloc(s->parts, (size_t)(n + k > 0 ? n + k : 1) * sizeof(*p)) : NULL;
  if (!p) {
    for (int64_t i = 0; i < k; i++) ffipar_msg_free(more[i]);
    ffipar_msg_free(index);
    return ok ? FFIPAR_ENOMEM : FFIPAR_EINVAL;
  }
  s->parts = p;
  for (int64_t i = 0; i < k; i++) p[n + i] = more[i];
  s->cap = n + k;
  s->whole = index;
  atomic_store_explicit(&s->nparts, n + k, memory_order_relaxed);
  /* Release: a state that sees `sealed` sees the parts and the index. */
  atomic_store_explicit(&s->sealed, 1, memory_order_release);
  return FFIPAR_OK;
}

const ffipar_msg *ffipar_share_index(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int32_t *)&s->sealed, memory_order_acquire) ? s->whole : NULL;
}

int ffipar_share_new(ffipar_share **out, ffipar_msg *msg, int64_t n)
{
  if (!msg || n < 0) { ffipar_msg_free(msg); return FFIPAR_EINVAL; }
  ffipar_share *s = cache_alloc(sizeof(*s));
  if (!s) { ffipar_msg_free(msg); return FFIPAR_ENOMEM; }
  obj_init(&s->hdr, FFIPAR_KSHARE, share_destroy);
  s->msg = msg;
  s->n = n;
  *out = s;
  return FFIPAR_OK;
}

const ffipar_msg *ffipar_share_msg(const ffipar_share *s)
{
  return s->msg;
}

int64_t ffipar_share_len(const ffipar_share *s)
{
  return s->n;
}

/* Relaxed: a count, read by tests once the decoding states are done. */
int64_t ffipar_share_decoded(ffipar_share *s)
{
  return atomic_fetch_add_explicit(&s->decodes, 1, memory_order_relaxed) + 1;
}

int64_t ffipar_share_decodes(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int64_t *)&s->decodes, memory_order_relaxed);
}

/* Relaxed: a count, as above. */
int64_t ffipar_share_chunks_decoded(ffipar_share *s, int64_t k)
{
  return atomic_fetch_add_explicit(&s->chunks, k, memory_order_relaxed) + k;
}

int64_t ffipar_share_chunk_decodes(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int64_t *)&s->chunks, memory_order_relaxed);
}

/* Acquire: when the count says only the caller's reference is left, the
** other holders' releases happened before; nobody can take a new one. */
int64_t ffipar_share_refs(const ffipar_share *s)
{
  return atomic_load_explicit((_Atomic int64_t *)&s->hdr.refs, memory_order_acquire);
}
