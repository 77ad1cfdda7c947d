/* gate_mutant_relaxed.c -- a test of the stress test: a leave with a
** relaxed fetch_sub (no release) must be caught. Only ThreadSanitizer can
** see it (x86 orders the RMW anyway), so outside `make tsan` this program
** says so and passes. Exits 0 when the mutant is caught. */
#define GATE_MUTANT 1
#include "shim.h"
#include "gate_variant.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif

int main(void)
{
#ifdef UNDER_TSAN
  return expect_caught("mutant 'relaxed leave'");
#else
  puts("mutant 'relaxed leave': skipped (only ThreadSanitizer sees it; run make tsan)");
  return 0;
#endif
}
