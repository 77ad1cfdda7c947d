# `make install` puts the module and the shim where LuaJIT's default paths
# look (checked here under a DESTDIR, with package.path/cpath pointed at it
# the way the defaults point at PREFIX), and `make uninstall` leaves the
# tree exactly as it was: files, and the lua/ and lua/5.1/ directories
# install made. Twice: on a bare prefix (only lib/ and share/), and on one
# where share/lua/5.1 already holds another module (kept).
set -eu
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
tree() { (cd "$d" && find . -printf '%y %m %p\n' | sort); }
check() {  # check LABEL
  local before after
  before=$(tree)
  make -s install DESTDIR="$d" PREFIX=/usr/local >/dev/null
  share="$d/usr/local/share/lua/5.1"; libdir="$d/usr/local/lib/lua/5.1"
  test -f "$share/ffipar.lua" && test -f "$share/ffipar/cdef.lua" && test -f "$libdir/libffipar.so"
  # No FFIPAR_LIB: the shim must be found through package.cpath.
  out=$(cd "$d" && env -u FFIPAR_LIB LUA_PATH="$share/?.lua" LUA_CPATH="$libdir/?.so" ${FFIPAR_LUAJIT:-luajit} -e '
    local par = require "ffipar"
    local a = par.array("int32_t", 2)
    assert(par.spawn(function(a) a[1] = 7 end, a):join(10))
    io.write(a[1])')
  [ "$out" = 7 ] || { echo "$1: installed module failed: $out"; exit 1; }
  make -s uninstall DESTDIR="$d" PREFIX=/usr/local >/dev/null
  after=$(tree)
  if [ "$before" != "$after" ]; then
    echo "$1: uninstall left the tree changed:"; diff <(echo "$before") <(echo "$after"); exit 1
  fi
  echo "$1: install, run, uninstall: tree as before"
}
mkdir -p "$d/usr/local/lib" "$d/usr/local/share"
check "bare prefix"
mkdir -p "$d/usr/local/share/lua/5.1"; echo 'return 1' > "$d/usr/local/share/lua/5.1/other.lua"
check "prefix with another module"
