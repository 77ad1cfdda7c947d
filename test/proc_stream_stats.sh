#!/bin/bash
# examples/stream_stats.lua on a generated access log (combined log format)
# whose numbers are known, fanned out over 3 analyzers in small batches.
set -e
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/access.XXXXXX)
out=$(mktemp /tmp/stats.XXXXXX)
trap 'rm -f "$log" "$out"' EXIT
LUAJIT=${FFIPAR_LUAJIT:-luajit}
$LUAJIT -e '
for i = 1, 1000 do
  local status = i % 100 == 0 and 500 or i % 10 == 0 and 404 or 200
  io.write(("10.0.0.%d - - [22/Nov/2026:%02d:%02d:01 +0000] \"GET /p%d?q=%d HTTP/1.1\" %d %d \"-\" \"curl/8\"\n")
    :format(i % 5, 10 + i % 2, i % 60, i % 3, i, status, i))
end
print("this line is not a request")' > "$log"
export LUA_PATH="ffi/?.lua;;"
$LUAJIT examples/stream_stats.lua --workers 3 --batch 7 --quiet "$log" > "$out"
cat "$out"
check() { grep -qE -- "$1" "$out" || { echo "MISSING: $1"; exit 1; }; }
check '1001 lines \(combined format\), 1 not understood'
check '^ +900 +90\.0% +200$'
check '^ +90 +9\.0% +404$'
check '^ +10 +1\.0% +500$'
check '^ +90 +9\.0% +4xx$'
check '^ +334 +33\.4% +/p1$'
check '^ +200 +20\.0% +10\.0\.0\.3$'
check '^client \(5 distinct\):$'
check '^hour \(2 distinct\):$'
check '^ +500 +50\.0% +2026-11-22 10:00$'
check '^response bytes: n=1000 sum=500500 mean=500\.5 min=1 p50=500 p90=900 p99=990 max=1000$'
# stdin with "-", and the format given explicitly
head -3 "$log" | $LUAJIT examples/stream_stats.lua --format combined --quiet - > "$out"
check '^standard input: 3 lines \(combined format\), 0 not understood'
# dpkg.log lines (the default input's format), detected
printf '%s\n' '2026-11-22 04:00:01 startup archives unpack' \
  '2026-11-22 04:00:02 install foo:amd64 <none> 1.0' \
  '2026-11-22 04:00:02 status half-installed foo:amd64 1.0' \
  '2026-11-22 04:00:03 upgrade bar:all 1.0 2.0' \
  '2026-11-22 04:00:04 configure foo:amd64 1.0 <none>' \
  '2026-11-22 04:00:05 status installed foo:amd64 1.0' > "$log"
$LUAJIT examples/stream_stats.lua --quiet "$log" > "$out"
cat "$out"
check '6 lines \(dpkg format\), 0 not understood'
check '^ +2 +33\.3% +status$'
check '^ +2 +66\.7% +foo$'
check '^ +1 +33\.3% +bar$'
check '^ +2 +100\.0% +foo$'
# --help and a bad option
$LUAJIT examples/stream_stats.lua --help | grep -q 'usage:'
if $LUAJIT examples/stream_stats.lua --bogus 2>/dev/null; then echo "bad option accepted"; exit 1; fi
echo ok
