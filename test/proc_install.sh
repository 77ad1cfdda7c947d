# `make install` puts the module and the shim where LuaJIT's default paths
# look (checked here under a DESTDIR, with package.path/cpath pointed at it
# the way the defaults point at PREFIX), and `make uninstall` removes them.
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
make -s install DESTDIR="$d" PREFIX=/usr/local >/dev/null
share="$d/usr/local/share/lua/5.1"; libdir="$d/usr/local/lib/lua/5.1"
test -f "$share/ffipar.lua" && test -f "$share/ffipar/cdef.lua" && test -f "$libdir/libffipar.so"
# No FFIPAR_LIB: the shim must be found through package.cpath.
out=$(cd "$d" && env -u FFIPAR_LIB LUA_PATH="$share/?.lua" LUA_CPATH="$libdir/?.so" ${FFIPAR_LUAJIT:-luajit} -e '
  local par = require "ffipar"
  local a = par.array("int32_t", 2)
  assert(par.spawn(function(a) a[1] = 7 end, a):join(10))
  io.write(a[1])')
[ "$out" = 7 ] || { echo "installed module failed: $out"; exit 1; }
make -s uninstall DESTDIR="$d" PREFIX=/usr/local >/dev/null
left=$(find "$d" -type f | wc -l)
[ "$left" -eq 0 ] || { echo "uninstall left $left files"; exit 1; }
echo "install and uninstall under DESTDIR: ok"
