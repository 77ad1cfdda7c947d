/* mandelbrot: seconds to render the N x N bitmap of examples/mandelbrot.lua
** (same kernel, same row chunks claimed from an atomic counter) on T
** threads. With a third argument, writes the PBM there.
** usage: mandelbrot N THREADS [FILE] */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* As in the Lua kernel: a row in 10 passes of 5 iterations over the pixels
** still inside (escape test every 5 iterations), compacting the list. */
static void rows(int lo, int hi)
{
  int *px = malloc(N * sizeof *px);
  double *cr = malloc(N * sizeof *cr), *zr = malloc(N * sizeof *zr), *zi = malloc(N * sizeof *zi);
  if (!px || !cr || !zr || !zi) { perror("mandelbrot"); exit(1); }
  for (int y = lo; y < hi; y++) {
    double Ci = 2.0 * y / N - 1.0;
    for (int x = 0; x < N; x++) { px[x] = x; cr[x] = 2.0 * x / N - 1.5; zr[x] = 0; zi[x] = 0; }
    int m = N;
    for (int pass = 0; pass < 10 && m > 0; pass++) {
      int j = 0;
      for (int k = 0; k < m; k++) {
        double Cr = cr[k], Zr = zr[k], Zi = zi[k], Tr = Zr * Zr, Ti = Zi * Zi;
#pragma GCC unroll 5                  /* written out, as in the Lua kernel */
        for (int i = 0; i < 5; i++) {
          Zi = 2.0 * Zr * Zi + Ci;
          Zr = Tr - Ti + Cr;
          Tr = Zr * Zr;
          Ti = Zi * Zi;
        }
        px[j] = px[k]; cr[j] = Cr; zr[j] = Zr; zi[j] = Zi;
        j += Tr + Ti <= 4.0;
      }
      m = j;
    }
    unsigned char *row = buf + (size_t)y * rowbytes;
    memset(row, 0, rowbytes);
    for (int k = 0; k < m; k++) row[px[k] >> 3] |= 128 >> (px[k] & 7);
  }
  free(px); free(cr); free(zr); free(zi);
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
