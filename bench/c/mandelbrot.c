/* mandelbrot: seconds to render the N x N bitmap of examples/mandelbrot.lua
** (same kernel, same row chunks claimed from an atomic counter) on T
** threads. With a third argument, writes the PBM there.
** usage: mandelbrot N THREADS [FILE] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int N, rowbytes, chunk;
static unsigned char *buf;
static _Atomic int next;

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void rows(int lo, int hi)
{
  for (int y = lo; y < hi; y++) {
    double Ci = 2.0 * y / N - 1.0;
    unsigned char *row = buf + (size_t)y * rowbytes;
    int byte = 0;
    for (int x = 0; x < N; x++) {
      double Cr = 2.0 * x / N - 1.5;
      double Zr = 0, Zi = 0, Tr = 0, Ti = 0;
      int n = 0;
      do {                            /* escape test every 5 iterations */
        for (int j = 0; j < 5; j++) {
          Zi = 2.0 * Zr * Zi + Ci;
          Zr = Tr - Ti + Cr;
          Tr = Zr * Zr;
          Ti = Zi * Zi;
        }
        n += 5;
      } while (n != 50 && Tr + Ti <= 4.0);
      byte += byte;
      if (Tr + Ti <= 4.0) byte++;
      if ((x & 7) == 7) { row[x >> 3] = (unsigned char)byte; byte = 0; }
    }
    if (N & 7) row[rowbytes - 1] = (unsigned char)(byte << (8 - (N & 7)));
  }
}

static void *work(void *arg)
{
  (void)arg;
  for (;;) {
    int lo = atomic_fetch_add(&next, chunk);
    if (lo >= N) return NULL;
    rows(lo, lo + chunk < N ? lo + chunk : N);
  }
}

int main(int argc, char **argv)
{
  N = argc > 1 ? atoi(argv[1]) : 4000;
  int t = argc > 2 ? atoi(argv[2]) : 2;
  rowbytes = (N + 7) / 8;
  chunk = (N + t * 16 - 1) / (t * 16);
  buf = calloc((size_t)rowbytes * N, 1);
  pthread_t th[64];
  double t0 = now();
  for (int i = 0; i < t; i++) pthread_create(&th[i], NULL, work, NULL);
  for (int i = 0; i < t; i++) pthread_join(th[i], NULL);
  printf("%.6f\n", now() - t0);
  if (argc > 3) {
    FILE *f = fopen(argv[3], "wb");
    fprintf(f, "P4\n%d %d\n", N, N);
    fwrite(buf, 1, (size_t)rowbytes * N, f);
    fclose(f);
  }
  return 0;
}
