/* gate_cap.c -- the stress harness on a gate whose count is capped at 2,
** so full gates, full groups and several groups of one color happen all
** the time. Exits 0 when every check passed. */
#define GATE_MAXCNT 2
#include "shim.h"
#include "gate_variant.h"

int main(void)
{
  int rc = run_child();
  puts(rc == 0 ? "gate_cap: OK" : "gate_cap: FAILED");
  return rc == 0 ? 0 : 1;
}
