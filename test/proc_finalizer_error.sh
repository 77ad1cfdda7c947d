# An error in a worker's finalizer (__gc) is reported as the main state's
# is, on every LuaJIT build: LuaJIT since 2023 prints "ERROR in finalizer:"
# to stderr (a handler luaL_newstate installs, which ffipar's worker states
# get too); older builds raise it where the collector ran, so the worker's
# code (and its joiner) sees it. Also at a state's close: a pool worker's
# state closes as the main state does. Runs test/finalizer_error.lua.
set -u
LUAJIT=${FFIPAR_LUAJIT:-luajit}
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
timeout 60 $LUAJIT test/finalizer_error.lua >"$d/out" 2>"$d/err"
rc=$?
fails=0
bad() { echo "$*"; fails=$((fails + 1)); }
[ $rc -eq 0 ] || bad "exit status $rc"
outcome() {  # the outcome for LABEL: printed (to stderr), raised (in the code), or lost
  local label=$1 msg="finalizer fails during $1"
  if grep -q "^$label	true	collected$" "$d/out"; then
    grep -q "^ERROR in finalizer: .*$msg\$" "$d/err" && echo printed || echo lost
  elif grep -q "^$label	false	.*$msg" "$d/out"; then
    echo raised
  else
    echo lost
  fi
}
main=$(outcome main); worker=$(outcome worker)
[ "$main" != lost ] || bad "the main state lost its finalizer error"
[ "$worker" = "$main" ] || bad "worker: finalizer error $worker, main state: $main"
if grep -q "at close of main" "$d/err"; then
  grep -q "^ERROR in finalizer: .*finalizer fails at close of pool$" "$d/err" ||
    bad "a worker's state lost the finalizer error at its close (the main state's is reported)"
fi
grep -q "^pool	true	kept$" "$d/out" || bad "pool task failed"
if [ $fails -ne 0 ]; then echo "stdout:"; cat "$d/out"; echo "stderr:"; cat "$d/err"; exit 1; fi
echo "finalizer errors: main state $main, worker $worker"
