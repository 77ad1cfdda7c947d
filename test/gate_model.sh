#!/bin/bash
# test/gate_model.sh: model-check test/gate.pml with spin.
#   bash test/gate_model.sh quick   the suite's run (test/proc_gate_model.sh,
#                                   seconds): safety without and with timeouts
#                                   as partial searches (supertrace, depth
#                                   200000), and two mutants that must fail
#   bash test/gate_model.sh full    `make model` (and CI, minutes): the two
#                                   mutants, safety without and with timeouts
#                                   as complete searches, plus liveness
#                                   (live0, live2 under weak fairness), count
#                                   saturation (MAXC=1), and partial
#                                   (supertrace, depth-bounded) 4-thread runs
#                                   with a colorless thread
# Prints one line per run (command, result, states, time) and exits non-zero
# when a check fails, then "N passed, M failed". Memory: about 2 GB at
# most; one core.
set -u
mode=${1:-quick}
here=$(cd "$(dirname "$0")" && pwd)
command -v spin >/dev/null || { echo "spin is not installed (make deps)"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$here/gate.pml" "$dir/"
cd "$dir" || exit 1
failed=0
runs=0; fails=0

# run NAME EXPECT SPIN_DEFINES CC_DEFINES PAN_ARGS
#   EXPECT: "pass" (0 errors, search complete) or "fail" (spin finds an error)
run() {
  local name=$1 expect=$2 sdefs=$3 cdefs=$4 pargs=$5
  runs=$((runs + 1))
  rm -f pan pan.* gate.pml.trail
  spin $sdefs -a gate.pml >/dev/null 2>&1 || { echo "FAIL $name: spin -a"; failed=1; fails=$((fails + 1)); return; }
  cc -O2 -w $cdefs -o pan pan.c || { echo "FAIL $name: cc"; failed=1; fails=$((fails + 1)); return; }
  local t0=$SECONDS out
  out=$(./pan $pargs 2>&1)
  local errors states
  errors=$(echo "$out" | sed -n 's/.*errors: \([0-9]*\).*/\1/p' | head -1)
  states=$(echo "$out" | sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' | head -1)
  local verdict=ok
  if [ "$expect" = bounded ]; then          # a partial search: no error found
    if [ "$errors" != 0 ]; then verdict=FAIL; fi
  elif [ "$expect" = pass ]; then
    if [ "$errors" != 0 ] || echo "$out" | grep -q "max search depth too small"; then verdict=FAIL; fi
  else
    if [ -z "$errors" ] || [ "$errors" = 0 ]; then verdict=FAIL; fi
  fi
  printf '%-4s %-34s errors %-2s states %-10s %4ds  spin %s -a; cc %s; ./pan %s\n' \
    "$verdict" "$name" "${errors:-?}" "${states:-?}" $((SECONDS - t0)) "$sdefs" "$cdefs" "$pargs"
  if [ "$verdict" != ok ]; then failed=1; fails=$((fails + 1)); echo "$out" | grep -E "error|violated|depth" | head -5; fi
}

SAFE="-DSAFETY -DNOCLAIM"
run "mutant: color ignored"    fail "-DMUTANT_COLOR"                 "$SAFE" "-m4000000 -w22"
run "mutant: no reopen"        fail "-DTIMEOUTS -DMUTANT_NOREOPEN"   "$SAFE" "-m4000000 -w22"
if [ "$mode" != full ]; then
  run "safety, partial"          bounded ""           "$SAFE -DBITSTATE" "-m200000 -w22"
  run "safety, timeouts, partial" bounded "-DTIMEOUTS" "$SAFE -DBITSTATE" "-m200000 -w22"
else
  run "safety"                   pass ""            "$SAFE -DCOLLAPSE" "-m4000000 -w24"
  run "safety, timeouts"         pass "-DTIMEOUTS"  "$SAFE -DHC4"      "-m4000000 -w26"
  run "mutant: never close"      fail "-DMUTANT_NOCLOSE"               "$SAFE" "-m4000000 -w22"
  run "safety, MAXC=1"         pass "-DTIMEOUTS -DMAXC=1" "$SAFE -DCOLLAPSE" "-m4000000 -w26"
  run "liveness live2 (color 2)" pass "" "-DCOLLAPSE" "-a -f -N live2 -m4000000 -w26"
  run "liveness live0 (color 1)" pass "" "-DCOLLAPSE" "-a -f -N live0 -m4000000 -w26"
  # 4 threads (a colorless one added) is beyond a complete search here:
  # a partial supertrace search, depth-bounded, finds no error.
  run "4 threads, partial supertrace" bounded "-DFOUR" "$SAFE -DBITSTATE" "-m200000 -w24"
  run "4 threads, timeouts, partial" bounded "-DFOUR -DTIMEOUTS" "$SAFE -DBITSTATE" "-m200000 -w25"
fi
echo "$((runs - fails)) passed, $fails failed"
exit $failed
