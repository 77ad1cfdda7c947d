/*
** gate_variant.h -- a second copy of csrc/gate.c, built with the defines
** the including file set (GATE_MAXCNT, GATE_MUTANT), its public names
** renamed so it links beside the real gate; then the stress harness, which
** uses the renamed copy.
*/
#define ffipar_gate_new variant_gate_new
#define ffipar_gate_named variant_gate_named
#define ffipar_gate_enter variant_gate_enter
#define ffipar_gate_leave variant_gate_leave
#define ffipar_gate_depth variant_gate_depth
#define ffipar_gate_private_color variant_gate_private_color
#define ffipar_gate_color variant_gate_color
#define ffipar_gate_color_release variant_gate_color_release
#define ffipar_gate_colors variant_gate_colors
#define ffipar_gate_holds_color variant_gate_holds_color
#define ffipar_gate_stats variant_gate_stats
#define gate_forget_thread variant_gate_forget_thread
#include "../../csrc/gate.c"
#include "gate_stress.h"
#include <sys/wait.h>

/* Run the harness in a child (so a sanitizer's abort or a hang is a
** result, not the end of this program); returns its exit status, or 128 +
** the signal that ended it. */
static int run_child(void)
{
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(60);                       /* a hang (deadlock) ends the child */
    int rc = stress_main();
    fflush(stdout);
    _exit(rc);
  }
  int status;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

/* For a mutant: exit 0 when the harness caught it. */
__attribute__((unused)) static int expect_caught(const char *name)
{
  int rc = run_child();
  if (rc > 0) {
    printf("%s: caught (harness exit %d)\n", name, rc);
    return 0;
  }
  printf("%s: NOT caught (harness exit %d)\n", name, rc);
  return 1;
}
