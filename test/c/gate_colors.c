/*
** gate_colors.c -- the string color table under contention: threads take
** and drop references to a few strings at random and check that, while
** anyone holds a string, everyone gets the same color for it; at the end
** every entry is freed. Exit status 0 = pass. Runs in `make test` and
** under the sanitizers.
*/
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "ffipar.h"

#define NT 4
#define NSTR 8
#define ITERS 200000

/* Per string: how many threads hold it and the color they got (under lock). */
static struct { pthread_mutex_t lock; int holders; double color; } str[NSTR];
static const char *names[NSTR] = { "a", "bb", "ccc", "red", "blue", "green", "x1", "x2" };
static int failures;

static void *worker(void *arg)
{
  uint64_t seed = 0x9E3779B97F4A7C15ull * (uint64_t)((intptr_t)arg + 1);
  int held[NSTR] = { 0 };
  for (long i = 0; i < ITERS; i++) {
    seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17;
    int k = (int)(seed % NSTR);
    size_t len = 0;
    while (names[k][len]) len++;
    if (!held[k]) {
      /* Take a reference first, then compare under the lock: a holder
      ** counted there held its reference since before, so it is the same
      ** entry as ours. */
      double c = ffipar_gate_color(names[k], len);
      pthread_mutex_lock(&str[k].lock);
      if (c < 0) __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
      else if (str[k].holders > 0 && str[k].color != c) {
        fprintf(stderr, "'%s': color %.0f while held as %.0f\n", names[k], c, str[k].color);
        __atomic_add_fetch(&failures, 1, __ATOMIC_SEQ_CST);
      }
      str[k].color = c;
      str[k].holders++;
      pthread_mutex_unlock(&str[k].lock);
      held[k] = 1;
    } else {
      /* Drop under the lock, so holders > 0 means a reference is held. */
      pthread_mutex_lock(&str[k].lock);
      str[k].holders--;
      ffipar_gate_color_release(names[k], len);
      pthread_mutex_unlock(&str[k].lock);
      held[k] = 0;
    }
  }
  for (int k = 0; k < NSTR; k++)
    if (held[k]) {
      size_t len = 0;
      while (names[k][len]) len++;
      pthread_mutex_lock(&str[k].lock);
      str[k].holders--;
      ffipar_gate_color_release(names[k], len);
      pthread_mutex_unlock(&str[k].lock);
    }
  return NULL;
}

int main(void)
{
  for (int k = 0; k < NSTR; k++) pthread_mutex_init(&str[k].lock, NULL);
  double first = ffipar_gate_color("a", 1);
  ffipar_gate_color_release("a", 1);
  pthread_t th[NT];
  for (long i = 0; i < NT; i++) pthread_create(&th[i], NULL, worker, (void *)i);
  for (int i = 0; i < NT; i++) pthread_join(th[i], NULL);
  int64_t left = ffipar_gate_colors();
  if (left != 0) { fprintf(stderr, "%lld colors left\n", (long long)left); failures++; }
  /* Never reused: a string taken again after it was freed gets a new color. */
  double again = ffipar_gate_color("a", 1);
  if (again == first) { fprintf(stderr, "color %.0f reused\n", first); failures++; }
  ffipar_gate_color_release("a", 1);
  printf("gate colors: %d threads x %d takes/drops of %d strings, %d failures\n",
         NT, ITERS, NSTR, failures);
  return failures != 0;
}
