# A process that exits while workers still run exits cleanly: status 0 (1
# for a main chunk that raises), nothing on stderr but that error, no hang,
# no crash. Repeated, since exit races are intermittent. $FFIPAR_LUAJIT may
# be a command with arguments (the sanitizer runs preload through env).
set -u
LUAJIT=${FFIPAR_LUAJIT:-luajit}
fails=0
for i in $(seq 1 10); do
  for mode in end exit close error; do
    want=0; [ $mode = error ] && want=1
    err=$(timeout 20 $LUAJIT test/exit_detached.lua $mode 2>&1 >/dev/null)
    rc=$?
    if [ $rc -ne $want ]; then
      echo "mode $mode run $i: exit status $rc, want $want: $err"; fails=$((fails + 1))
    elif [ $mode != error ] && [ -n "$err" ]; then
      echo "mode $mode run $i: stderr: $err"; fails=$((fails + 1))
    elif [ $mode = error ] && ! echo "$err" | grep -q "main fails on purpose"; then
      echo "mode error run $i: unexpected stderr: $err"; fails=$((fails + 1))
    fi
  done
done
echo "exit with running workers: $fails failures in 40 runs"
[ $fails -eq 0 ]
