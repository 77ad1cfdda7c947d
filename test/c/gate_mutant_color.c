/* gate_mutant_color.c -- a test of the stress test: a gate whose slow path
** lets a thread into an open gate of any color (a one-word bug) must be
** caught by the harness. Exits 0 when it is. */
#define GATE_MUTANT 2
#include "shim.h"
#include "gate_variant.h"

int main(void)
{
  return expect_caught("mutant 'slow path ignores the color'");
}
