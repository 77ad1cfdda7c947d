/*
** share_stream.c -- a par.share stream (a big spawn argument in flight)
** raced from plain pthreads: one sender puts numbered parts and ends with
** each verdict, one receiver waits for every part and checks that it sees
** each part whole and in order, and that a verdict comes with everything
** published before it (the whole value for WHOLE); then the steps of a
** lazy snapshot (par.share(t, { lazy = true })). Exit status 0 = pass.
** Run by `make test`, and under the sanitizers.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include "ffipar.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); \
  __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST); } } while (0)

struct run { ffipar_share *s; int64_t parts; int32_t verdict; };

static ffipar_msg *numbered(int64_t i)
{
  char buf[64];
  int n = snprintf(buf, sizeof buf, "part %lld of the stream", (long long)i);
  return ffipar_msg_new(buf, (size_t)n, NULL, 0);
}

static void *sender(void *arg)
{
  struct run *r = arg;
  for (int64_t i = 0; i < r->parts; i++) CHECK(ffipar_share_put(r->s, numbered(i)) == FFIPAR_OK, "put %lld", (long long)i);
  ffipar_msg *whole = r->verdict == FFIPAR_STREAM_WHOLE ? ffipar_msg_new("whole", 5, NULL, 0) : NULL;
  CHECK(ffipar_share_end(r->s, r->verdict, whole) == FFIPAR_OK, "end");
  return NULL;
}

/* What the Lua receiver does: the verdict first, then the parts. */
static void receive(struct run *r)
{
  int64_t i = 0;
  for (;;) {
    CHECK(ffipar_share_wait(r->s, i, 30) == FFIPAR_OK, "wait timed out at part %lld", (long long)i);
    int32_t v = ffipar_share_verdict(r->s);
    if (v == FFIPAR_STREAM_WHOLE) {
      size_t len;
      const char *p = ffipar_msg_data(ffipar_share_whole(r->s), &len);
      CHECK(len == 5 && memcmp(p, "whole", 5) == 0, "whole value");
      CHECK(ffipar_share_nparts(r->s) == r->parts, "parts before WHOLE");
      return;
    }
    if (v == FFIPAR_STREAM_ABANDONED) { CHECK(r->verdict == v, "abandoned"); return; }
    if (i < ffipar_share_nparts(r->s)) {
      size_t len;
      char want[64];
      int n = snprintf(want, sizeof want, "part %lld of the stream", (long long)i);
      const char *p = ffipar_msg_data(ffipar_share_part(r->s, i), &len);
      CHECK(len == (size_t)n && memcmp(p, want, len) == 0, "part %lld", (long long)i);
      i++;
    } else if (v == FFIPAR_STREAM_DONE) {
      CHECK(i == r->parts && r->verdict == v, "DONE after %lld of %lld parts", (long long)i, (long long)r->parts);
      return;
    }
  }
}

int main(int argc, char **argv)
{
  long rounds = argc > 1 ? atol(argv[1]) : (getenv("FFIPAR_SANITIZER") ? 2000 : 20000);
  int32_t verdicts[] = { FFIPAR_STREAM_DONE, FFIPAR_STREAM_WHOLE, FFIPAR_STREAM_ABANDONED };
  for (long k = 0; k < rounds && !failures; k++) {
    struct run r = { NULL, k % 40, verdicts[k % 3] };
    CHECK(ffipar_share_stream(&r.s, r.parts, r.parts * 10, 0) == FFIPAR_OK, "new stream");
    pthread_t t;
    pthread_create(&t, NULL, sender, &r);
    receive(&r);
    pthread_join(t, NULL);
    /* misuse: full, ended, wrong verdicts; none leaks its message */
    CHECK(ffipar_share_put(r.s, numbered(0)) == FFIPAR_EINVAL, "put after end");
    CHECK(ffipar_share_end(r.s, FFIPAR_STREAM_DONE, NULL) == FFIPAR_EINVAL, "second end");
    ffipar_obj_release(r.s);
  }
  ffipar_share *s;
  CHECK(ffipar_share_stream(&s, 1, 1, 0) == FFIPAR_OK, "new");
  CHECK(ffipar_share_end(s, FFIPAR_STREAM_WHOLE, NULL) == FFIPAR_EINVAL, "WHOLE needs a value");
  CHECK(ffipar_share_end(s, FFIPAR_STREAM_DONE, ffipar_msg_new("x", 1, NULL, 0)) == FFIPAR_EINVAL,
        "DONE takes no value");
  CHECK(ffipar_share_end(s, 7, NULL) == FFIPAR_EINVAL, "unknown verdict");
  CHECK(ffipar_share_put(s, numbered(0)) == FFIPAR_OK, "put");
  CHECK(ffipar_share_put(s, numbered(1)) == FFIPAR_EINVAL, "put beyond cap");
  CHECK(ffipar_share_wait(s, 1, 0) == FFIPAR_ETIMEOUT, "poll for a part not there");
  ffipar_obj_release(s);

  /* A lazy snapshot: opened, its parts put and ended, then sealed with more
  ** parts and an index; or made whole, before or after a failed opening.
  ** Refused steps free the messages they were given (leak checks). */
  CHECK(ffipar_share_lazy(&s) == FFIPAR_OK, "lazy");
  CHECK(ffipar_share_put(s, numbered(0)) == FFIPAR_EINVAL, "put before open");
  CHECK(ffipar_share_seal(s, NULL, 0, numbered(9)) == FFIPAR_EINVAL, "seal before open");
  CHECK(ffipar_share_open(s, 2, 30) == FFIPAR_OK, "open");
  CHECK(ffipar_share_open(s, 2, 30) == FFIPAR_EINVAL, "second open");
  CHECK(ffipar_share_put(s, numbered(0)) == FFIPAR_OK && ffipar_share_put(s, numbered(1)) == FFIPAR_OK, "puts");
  CHECK(ffipar_share_seal(s, NULL, 0, numbered(9)) == FFIPAR_EINVAL, "seal before end");
  CHECK(ffipar_share_index(s) == NULL, "no index before the seal");
  CHECK(ffipar_share_end(s, FFIPAR_STREAM_DONE, NULL) == FFIPAR_OK, "end");
  ffipar_msg *more[3] = { numbered(2), numbered(3), numbered(4) };
  CHECK(ffipar_share_seal(s, more, 3, numbered(9)) == FFIPAR_OK, "seal");
  CHECK(ffipar_share_nparts(s) == 5 && ffipar_share_len(s) == 30, "5 parts of 30 entries");
  size_t len;
  for (int64_t i = 0; i < 5; i++) {
    const char *d = ffipar_msg_data(ffipar_share_part(s, i), &len);
    char want[64];
    snprintf(want, sizeof want, "part %lld of the stream", (long long)i);
    CHECK(len == strlen(want) && memcmp(d, want, len) == 0, "part %lld", (long long)i);
  }
  CHECK(ffipar_share_index(s) != NULL && ffipar_share_msg(s) == NULL, "sealed: an index, no message");
  CHECK(ffipar_share_make(s, numbered(8), 30) == FFIPAR_EINVAL, "make after the seal");
  ffipar_msg *again[1] = { numbered(5) };
  CHECK(ffipar_share_seal(s, again, 1, numbered(9)) == FFIPAR_EINVAL, "second seal");
  ffipar_obj_release(s);
  CHECK(ffipar_share_lazy(&s) == FFIPAR_OK, "lazy");
  CHECK(ffipar_share_open(s, 4, 10) == FFIPAR_OK && ffipar_share_put(s, numbered(0)) == FFIPAR_OK, "open, put");
  CHECK(ffipar_share_end(s, FFIPAR_STREAM_ABANDONED, NULL) == FFIPAR_OK, "abandoned");
  CHECK(ffipar_share_make(s, numbered(7), 12) == FFIPAR_OK, "made whole after a failed opening");
  CHECK(ffipar_share_nparts(s) == 0 && ffipar_share_msg(s) != NULL && ffipar_share_len(s) == 12, "whole");
  CHECK(ffipar_share_make(s, numbered(7), 12) == FFIPAR_EINVAL, "second make");
  CHECK(ffipar_share_open(s, 4, 10) == FFIPAR_EINVAL, "open after make");
  ffipar_obj_release(s);
  CHECK(ffipar_share_stream(&s, 1, 1, 0) == FFIPAR_OK, "a stream");
  CHECK(ffipar_share_make(s, numbered(7), 1) == FFIPAR_EINVAL && ffipar_share_open(s, 1, 1) == FFIPAR_EINVAL,
        "a stream is not lazy");
  ffipar_obj_release(s);
  CHECK(ffipar_obj_live() == 0, "%lld objects left", (long long)ffipar_obj_live());
  if (failures) { fprintf(stderr, "share_stream: %d failures\n", failures); return 1; }
  printf("share_stream: %ld rounds ok\n", rounds);
  return 0;
}
