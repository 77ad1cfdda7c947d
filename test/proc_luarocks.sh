# `luarocks make --local` in a copy of the source tree (rockspec
# ffipar-scm-1.rockspec) installs a working ffipar: a script run from
# another directory, with no LUA_PATH, LUA_CPATH or FFIPAR_LIB, finds it in
# the rocks tree (package.path/cpath set by the script, as `luarocks path`
# would), loads the installed shim, and spawns a worker that requires
# ffipar too. HOME is a temporary directory: the user's is untouched.
set -u
# luarocks builds the shim with plain flags: under make asan/tsan the
# runtime would report that uninstrumented shim, not a bug.
if [ -n "${FFIPAR_SANITIZER:-}" ]; then echo "skipped under $FFIPAR_SANITIZER"; exit 0; fi
LUAJIT=${FFIPAR_LUAJIT:-luajit}
command -v luarocks >/dev/null || { echo "luarocks is not installed (make deps)"; exit 1; }
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
mkdir -p "$d/src" "$d/home" "$d/elsewhere"
cp -r Makefile ffipar-scm-1.rockspec csrc ffi tools mk "$d/src/"
(cd "$d/src" && make -s clean >/dev/null 2>&1)
if ! (cd "$d/src" && HOME="$d/home" timeout 300 luarocks make --local >"$d/log" 2>&1); then
  echo "luarocks make --local failed:"; tail -20 "$d/log"; exit 1
fi
tree="$d/home/.luarocks"
[ -f "$tree/share/lua/5.1/ffipar.lua" ] && [ -f "$tree/lib/lua/5.1/libffipar.so" ] ||
  { echo "not installed where expected:"; find "$tree" | head -30; exit 1; }
cat > "$d/elsewhere/use.lua" <<'LUA'
  local tree = ...
  package.path = tree .. "/share/lua/5.1/?.lua;" .. package.path
  package.cpath = tree .. "/lib/lua/5.1/?.so;" .. package.cpath
  local ffi = require "ffi"
  local par = require "ffipar"
  local here = ffi.string(require("ffipar.lib").C.ffipar_lib_path())
  local t = par.spawn(function()
    local p = require "ffipar"
    local a = p.array("int32_t", 1)
    a[0] = p.id()
    return package.loaded["ffipar.libpath"], a[0]
  end)
  local ok, there, id = t:join(10)
  assert(ok, there)
  print(here)
  print(there)
  print(id)
LUA
out=$(cd "$d/elsewhere" && env -u LUA_PATH -u LUA_CPATH -u FFIPAR_LIB timeout 60 $LUAJIT use.lua "$tree" 2>&1)
rc=$?
want="$tree/lib/lua/5.1/libffipar.so"
if [ $rc -ne 0 ] || [ "$(echo "$out" | sed -n 1p)" != "$want" ] || [ "$(echo "$out" | sed -n 2p)" != "$want" ] ||
   ! [ "$(echo "$out" | sed -n 3p)" -ge 1 ] 2>/dev/null; then
  echo "installed rock did not work (exit $rc), want the shim from $want:"; echo "$out"; exit 1
fi
echo "luarocks make --local: installed, required from elsewhere, worker ran (shim $want)"
