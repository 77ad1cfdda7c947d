/* gate_stress.c -- the color gate under 10 threads, 3 classes and random
** deadlines (see gate_stress.h). Exits 0 when every check passed. */
#include "shim.h"
#include "gate_stress.h"

int main(void)
{
  int rc = stress_main();
  puts(rc == 0 ? "gate_stress: OK" : "gate_stress: FAILED");
  return rc;
}
