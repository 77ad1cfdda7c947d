/*
** obj.c -- reference-counted shared objects, messages, and the process-wide
** list of par.cdef declarations.
*/
#include "shim.h"

static const char *const errors[] = {
  "ok", "timeout", "closed", "out of memory", "system call failed",
  "cancelled", "invalid argument", "not owner", "busy",
  "Resource temporarily unavailable (thread limit?)"
};

const char *ffipar_strerror(int rc)
{
  if (rc > 0 || -rc >= (int)(sizeof(errors) / sizeof(errors[0])))
    return "unknown error";
  return errors[-rc];
}

void *cache_alloc(size_t size)
{
  size_t rounded = (size + 63) & ~(size_t)63;
  void *p = aligned_alloc(64, rounded ? rounded : 64);
  if (p) memset(p, 0, rounded ? rounded : 64);
  return p;
}

/* Relaxed: a statistic, read only by tests once the threads they count are done. */
static _Atomic int64_t live;

int64_t ffipar_obj_live(void)
{
  return atomic_load_explicit(&live, memory_order_relaxed);
}

void obj_init(ffipar_obj *o, int kind, void (*destroy)(ffipar_obj *))
{
  atomic_fetch_add_explicit(&live, 1, memory_order_relaxed);
  atomic_init(&o->refs, 1);
  o->kind = kind;
  o->destroy = destroy;
}

void ffipar_obj_retain(void *obj)
{
  ffipar_obj *o = obj;
  /* Relaxed: the caller holds a reference, so the object cannot go away. */
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

void obj_destroy(ffipar_obj *o)
{
  atomic_fetch_sub_explicit(&live, 1, memory_order_relaxed);
  o->destroy(o);
}

void ffipar_obj_release(void *obj)
{
  ffipar_obj *o = obj;
  if (!o) return;
  if (o->kind == FFIPAR_KPOOL) { pool_release(o); return; }
  /* acq_rel: the last release must see every write done under other refs. */
  if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) obj_destroy(o);
}

int ffipar_obj_kind(const void *obj)
{
  return ((const ffipar_obj *)obj)->kind;
}

/* ---- messages ---- */

struct ffipar_msg {
  size_t len;
  int nobjs;
  void **objs;
  char data[];
};

ffipar_msg *ffipar_msg_new(const char *data, size_t len, void **objs, int nobjs)
{
  ffipar_msg *m = malloc(sizeof(*m) + len + (size_t)nobjs * sizeof(void *));
  if (!m) return NULL;
  m->len = len;
  m->nobjs = nobjs;
  m->objs = (void **)(m->data + len);
  memcpy(m->data, data, len);
  for (int i = 0; i < nobjs; i++) {
    m->objs[i] = objs[i];
    ffipar_obj_retain(objs[i]);
  }
  return m;
}

void ffipar_msg_free(ffipar_msg *m)
{
  if (!m) return;
  for (int i = 0; i < m->nobjs; i++) ffipar_obj_release(m->objs[i]);
  free(m);
}

const char *ffipar_msg_data(const ffipar_msg *m, size_t *len)
{
  *len = m->len;
  return m->data;
}

void *ffipar_msg_obj(const ffipar_msg *m, int i)
{
  return (i >= 0 && i < m->nobjs) ? m->objs[i] : NULL;
}

int ffipar_msg_nobjs(const ffipar_msg *m)
{
  return m->nobjs;
}

/* ---- par.cdef: append-only; an entry never changes once published, and
** the array pointer (which grows) is read under the lock. ---- */

static pthread_mutex_t cdef_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { char *s; size_t len; } *cdefs;
static int capcdefs;
/* Written under the lock after the entry is in place (release); read
** without it (acquire) on every message a state decodes. */
static _Atomic int ncdefs;

int ffipar_cdef_add(const char *decl, size_t len)
{
  char *copy = malloc(len + 1);
  if (!copy) return FFIPAR_ENOMEM;
  memcpy(copy, decl, len);
  copy[len] = 0;
  pthread_mutex_lock(&cdef_lock);
  if (atomic_load_explicit(&ncdefs, memory_order_relaxed) == capcdefs) {
    int cap = capcdefs ? 2 * capcdefs : 16;
    void *n = realloc(cdefs, (size_t)cap * sizeof(*cdefs));
    if (!n) { pthread_mutex_unlock(&cdef_lock); free(copy); return FFIPAR_ENOMEM; }
    cdefs = n;
    capcdefs = cap;
  }
  int i = atomic_load_explicit(&ncdefs, memory_order_relaxed);
  cdefs[i].s = copy;
  cdefs[i].len = len;
  atomic_store_explicit(&ncdefs, i + 1, memory_order_release);
  pthread_mutex_unlock(&cdef_lock);
  return i;
}

int ffipar_cdef_count(void)
{
  return atomic_load_explicit(&ncdefs, memory_order_acquire);
}

const char *ffipar_cdef_get(int i, size_t *len)
{
  pthread_mutex_lock(&cdef_lock);
  const char *s = NULL;
  *len = 0;
  if (i >= 0 && i < atomic_load_explicit(&ncdefs, memory_order_relaxed)) {
    s = cdefs[i].s;
    *len = cdefs[i].len;
  }
  pthread_mutex_unlock(&cdef_lock);
  return s;
}
