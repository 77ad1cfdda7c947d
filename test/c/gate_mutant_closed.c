/* gate_mutant_closed.c -- a test of the stress test: a fast path that
** ignores CLOSED (PyPy's check: safe, but a busy color starves the others)
** must be caught by the harness's closing check. Exits 0 when it is. */
#define GATE_MUTANT 3
#include "shim.h"
#include "gate_variant.h"

int main(void)
{
  return expect_caught("mutant 'fast path ignores CLOSED'");
}
