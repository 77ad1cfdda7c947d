/*
** share.c -- par.share: a read-only snapshot of a Lua table. The object
** holds the encoded message, written before the object is published and
** never changed after, so any state may read it without a lock; it counts
** the states that decoded it (a statistic, for tests and tuning).
*/
#include "shim.h"

struct ffipar_share {
  ffipar_obj hdr;
  ffipar_msg *msg;               /* immutable once created */
  int64_t n;
  _Atomic int64_t decodes;
  _Atomic int64_t chunks;        /* chunks decoded, all states together */
};

static void share_destroy(ffipar_obj *o)
{
  ffipar_share *s = (ffipar_share *)o;
  ffipar_msg_free(s->msg);
  free(s);
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
