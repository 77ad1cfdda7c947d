# The examples run, check themselves, and refuse bad arguments.
set -u
LUAJIT=${FFIPAR_LUAJIT:-luajit}
fails=0
check() {  # check NAME EXPECTED-STATUS COMMAND...
  local name=$1 want=$2; shift 2
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne $want ]; then echo "$name: exit $rc, want $want"; echo "$out" | tail -5; fails=$((fails + 1)); fi
}
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
check "mandelbrot --check" 0 $LUAJIT examples/mandelbrot.lua 203 -w 2 --check -o "$d/m.pbm"
head -c 12 "$d/m.pbm" | grep -q "P4" || { echo "mandelbrot: no P4 header"; fails=$((fails + 1)); }
size=$(stat -c %s "$d/m.pbm"); want=$(( 11 + 26 * 203 ))   # "P4\n203 203\n" (11 bytes) + ceil(203/8) * 203
[ "$size" -eq "$want" ] || { echo "mandelbrot: $size bytes, want $want"; fails=$((fails + 1)); }
# The same bitmap as the C baseline of `make bench` (same kernel, in C).
if ${CC:-cc} -std=gnu11 -O2 -pthread -o "$d/mandel_c" bench/c/mandelbrot.c -lm 2>/dev/null; then
  "$d/mandel_c" 203 2 "$d/c.pbm" >/dev/null
  cmp -s "$d/m.pbm" "$d/c.pbm" || { echo "mandelbrot: bitmap differs from bench/c/mandelbrot.c"; fails=$((fails + 1)); }
else
  echo "mandelbrot: cannot build bench/c/mandelbrot.c"; fails=$((fails + 1))
fi
check "mandelbrot bad N" 2 $LUAJIT examples/mandelbrot.lua -w 0
check "best_move" 0 $LUAJIT examples/best_move.lua -n 120 -s 5
check "best_move --checked" 0 $LUAJIT examples/best_move.lua -n 60 -s 3 --checked
check "best_move bad -n" 2 $LUAJIT examples/best_move.lua -n 2
check "heavy_computation" 0 $LUAJIT examples/heavy_computation.lua -n 100000 -w 2
check "heavy_computation --help" 0 $LUAJIT examples/heavy_computation.lua --help
out=$($LUAJIT examples/shared_counter.lua -w 2 -n 200000 2>&1)
[ "$(echo "$out" | grep -c ' exact ')" -eq 2 ] || { echo "shared_counter: $out"; fails=$((fails + 1)); }
check "shared_counter bad -w" 2 $LUAJIT examples/shared_counter.lua -w 0
check "nvim_fuzzy under luv --check" 0 $LUAJIT examples/nvim_fuzzy.lua futexwait csrc --check
echo "$out" | grep -q "^csrc/.*futex_wait" || { echo "nvim_fuzzy: no futex_wait line found"; fails=$((fails + 1)); }
check "nvim_fuzzy no files" 1 $LUAJIT examples/nvim_fuzzy.lua q /nonexistent
echo "examples: $fails failures"
[ $fails -eq 0 ]
