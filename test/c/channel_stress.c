/* channel_stress: the C channel under many producers and consumers, with
** close racing against them and a selector reading two channels. Checks
** that every item pushed successfully is popped exactly once (by count and
** by a per-item mark), that bytes items (VBSTR, copied into the slots'
** buffers and traded for the popper's spare) arrive whole, and that queued
** messages and every buffer are freed with the channel.
** Exits 0 on success; bounded by the item counts (no unbounded waits).
** Built by the Makefile (with the suite's sanitizer) and run by make test. */
#include "shim.h"
#include <stdio.h>

enum { PRODUCERS = 4, CONSUMERS = 4, PER = 20000 };

static ffipar_channel *ch, *other;
static _Atomic int64_t pushed, popped, sum_pushed, sum_popped;
static _Atomic unsigned char seen[PRODUCERS * PER + 1];

/* Item v goes as a number when odd, else as bytes: v itself, then a
** pattern of v, 8 to 600 bytes long, or FFIPAR_BUF_MAX now and then. */
static uint32_t bytes_len(int64_t v)
{
  return v % 50 == 0 ? FFIPAR_BUF_MAX : 8 + (uint32_t)(v % 593);
}

static unsigned char pattern(int64_t v, uint32_t j)
{
  return (unsigned char)((v * 31 + j * 7) & 0xff);
}

static void *producer(void *arg)
{
  int id = (int)(intptr_t)arg;
  char data[FFIPAR_BUF_MAX];
  ffipar_channel_buf *spare = NULL;
  for (int i = 0; i < PER; i++) {
    int64_t v = (int64_t)id * PER + i + 1;
    ffipar_value item = { .tag = FFIPAR_VNUM, .u.n = (double)v };
    if (v % 2 == 0) {
      uint32_t len = bytes_len(v);
      memcpy(data, &v, 8);
      for (uint32_t j = 8; j < len; j++) data[j] = (char)pattern(v, j);
      if (!spare || spare->cap < len) {
        ffipar_channel_buf_free(spare);
        spare = ffipar_channel_buf_new(len);
        if (!spare) { fprintf(stderr, "no buffer\n"); exit(1); }
      }
      item = (ffipar_value){ .tag = FFIPAR_VBSTR, .len = len, .u.b = { data, spare } };
    }
    int rc = ffipar_channel_push(id % 2 ? ch : other, &item, 5.0);
    if (rc == FFIPAR_ECLOSED) break;
    if (rc != FFIPAR_OK) { fprintf(stderr, "push rc %d\n", rc); exit(1); }
    if (item.tag == FFIPAR_VBSTR) spare = item.u.b.buf;     /* what the slot gave back */
    atomic_fetch_add(&pushed, 1);
    atomic_fetch_add(&sum_pushed, v);
  }
  ffipar_channel_buf_free(spare);
  return NULL;
}

/* Check an item; a bytes item's buffer becomes the popper's spare. */
static void take(ffipar_value *item, ffipar_channel_buf **spare)
{
  int64_t v = (int64_t)item->u.n;
  if (item->tag == FFIPAR_VBSTR) {
    const char *d = item->u.b.data;
    if (!item->u.b.buf || d != item->u.b.buf->data) { fprintf(stderr, "no buffer\n"); exit(1); }
    memcpy(&v, d, 8);
    if (v < 1 || v > PRODUCERS * PER || v % 2 || item->len != bytes_len(v)) {
      fprintf(stderr, "bad bytes item\n");
      exit(1);
    }
    for (uint32_t j = 8; j < item->len; j++)
      if ((unsigned char)d[j] != pattern(v, j)) { fprintf(stderr, "item %lld: bad byte %u\n", (long long)v, j); exit(1); }
    *spare = item->u.b.buf;
  } else if (item->tag != FFIPAR_VNUM || v % 2 == 0) {
    fprintf(stderr, "bad item\n");
    exit(1);
  }
  if (v < 1 || v > PRODUCERS * PER) { fprintf(stderr, "bad item\n"); exit(1); }
  if (atomic_fetch_add(&seen[v], 1) != 0) { fprintf(stderr, "item %lld twice\n", (long long)v); exit(1); }
  atomic_fetch_add(&popped, 1);
  atomic_fetch_add(&sum_popped, v);
}

static void *consumer(void *arg)
{
  ffipar_channel *c = arg;
  ffipar_value item;
  ffipar_channel_buf *spare = NULL;
  for (int n = 0;; n++) {
    /* Offer the spare, but now and then offer none (the slot then has none). */
    item.tag = n % 7 ? FFIPAR_VSPARE : FFIPAR_VNUM;
    item.u.b.buf = spare;
    int rc = ffipar_channel_pop(c, &item, 5.0);
    if (rc == FFIPAR_ECLOSED) break;
    if (rc != FFIPAR_OK) { fprintf(stderr, "pop rc %d\n", rc); exit(1); }
    if (n % 7 == 0 && item.tag == FFIPAR_VBSTR) {
      ffipar_channel_buf *kept = spare;        /* not offered: still ours */
      take(&item, &spare);
      ffipar_channel_buf_free(kept);
    } else {
      take(&item, &spare);
    }
  }
  ffipar_channel_buf_free(spare);
  return NULL;
}

static void *selector(void *arg)
{
  (void)arg;
  ffipar_channel *both[2] = { ch, other };
  int open = 3, which;
  ffipar_value item;
  ffipar_channel_buf *spare = NULL;
  while (open) {
    ffipar_channel *sel[2];
    int n = 0;
    for (int i = 0; i < 2; i++) if (open & (1 << i)) sel[n++] = both[i];
    item.tag = FFIPAR_VSPARE;
    item.u.b.buf = spare;
    int rc = ffipar_channel_select(sel, n, &item, &which, 5.0);
    if (rc == FFIPAR_OK) take(&item, &spare);
    else if (rc == FFIPAR_ECLOSED) open &= ~(sel[which] == ch ? 1 : 2);
    else { fprintf(stderr, "select rc %d\n", rc); exit(1); }
  }
  ffipar_channel_buf_free(spare);
  return NULL;
}

static int run(int close_early)
{
  pthread_t p[PRODUCERS], c[CONSUMERS], s;
  if (ffipar_channel_new(&ch, 16, 0, 0, 1) || ffipar_channel_new(&other, 3, 0, 0, 1)) return 1;
  for (int i = 0; i < CONSUMERS; i++) pthread_create(&c[i], NULL, consumer, i % 2 ? ch : other);
  pthread_create(&s, NULL, selector, NULL);
  for (int i = 0; i < PRODUCERS; i++) pthread_create(&p[i], NULL, producer, (void *)(intptr_t)i);
  if (close_early) {
    struct timespec ts = { 0, 2000000 };
    nanosleep(&ts, NULL);
    ffipar_channel_close(ch);
    ffipar_channel_close(other);
  }
  for (int i = 0; i < PRODUCERS; i++) pthread_join(p[i], NULL);
  ffipar_channel_close(ch);
  ffipar_channel_close(other);
  for (int i = 0; i < CONSUMERS; i++) pthread_join(c[i], NULL);
  pthread_join(s, NULL);
  if (pushed != popped || sum_pushed != sum_popped) {
    fprintf(stderr, "pushed %lld popped %lld\n", (long long)pushed, (long long)popped);
    return 1;
  }
  if (!close_early && pushed != PRODUCERS * PER) return 1;
  ffipar_obj_release(ch);
  ffipar_obj_release(other);
  printf("%s: %lld items exactly once\n", close_early ? "early close" : "full run", (long long)pushed);
  pushed = popped = sum_pushed = sum_popped = 0;
  memset((void *)seen, 0, sizeof(seen));
  return 0;
}

int main(void)
{
  int64_t live0 = ffipar_obj_live();
  if (run(0) || run(1)) return 1;
  if (ffipar_channel_bufs_live() != 0) {
    fprintf(stderr, "%lld buffers leaked\n", (long long)ffipar_channel_bufs_live());
    return 1;
  }
  /* A channel freed with queued messages frees them (and their objects). */
  ffipar_channel *c;
  ffipar_shm *s;
  if (ffipar_channel_new(&c, 4, 0, 0, 1) || ffipar_shm_new(&s, 64)) return 1;
  void *objs[1] = { s };
  ffipar_value item = { .tag = FFIPAR_VMSG, .u.msg = ffipar_msg_new("x", 1, objs, 1) };
  if (ffipar_channel_push(c, &item, 0) != FFIPAR_OK) return 1;
  ffipar_obj_release(s);
  if (ffipar_obj_live() != live0 + 2) return 1;
  ffipar_obj_release(c);
  if (ffipar_obj_live() != live0) { fprintf(stderr, "leak\n"); return 1; }
  /* Bytes items queued when the channel goes are freed with it, and so is
  ** every slot's buffer; bad bytes items are refused before they go in. */
  if (ffipar_channel_new(&c, 3, 0, 0, 1)) return 1;
  ffipar_channel_buf *b = ffipar_channel_buf_new(100);
  ffipar_value bad = { .tag = FFIPAR_VBSTR, .len = 101, .u.b = { "x", b } };
  if (ffipar_channel_push(c, &bad, 0) != FFIPAR_EINVAL) return 1;
  bad.u.b.buf = NULL;
  bad.len = 1;
  if (ffipar_channel_push(c, &bad, 0) != FFIPAR_EINVAL) return 1;
  for (int i = 0; i < 3; i++) {
    if (!b) b = ffipar_channel_buf_new(100);
    ffipar_value it = { .tag = FFIPAR_VBSTR, .len = 5, .u.b = { "hello", b } };
    if (ffipar_channel_push(c, &it, 0) != FFIPAR_OK) return 1;
    b = it.u.b.buf;
  }
  ffipar_value out = { .tag = FFIPAR_VSPARE, .u.b.buf = b };
  if (ffipar_channel_pop(c, &out, 0) != FFIPAR_OK || out.tag != FFIPAR_VBSTR || out.len != 5 ||
      memcmp(out.u.b.data, "hello", 5)) return 1;
  ffipar_channel_buf_free(out.u.b.buf);
  if (ffipar_channel_bufs_live() != 3) { fprintf(stderr, "expected 3 buffers\n"); return 1; }
  ffipar_obj_release(c);
  if (ffipar_channel_bufs_live() != 0) { fprintf(stderr, "buffers leaked\n"); return 1; }
  /* Misuse is refused, not crashed on. */
  if (ffipar_channel_new(&c, 0, 8, 8, 0) != FFIPAR_EINVAL) return 1;
  if (ffipar_channel_new(&c, 4, 8, 3, 0) != FFIPAR_EINVAL) return 1;
  puts("ok");
  return 0;
}
