#!/bin/bash
# Builds and runs test/channel_stress.c (the C channel under 4 producers, 4
# consumers and a selector, with close races). Under `make asan` / `make tsan`
# (FFIPAR_SANITIZER set) it is built with the same sanitizer, linked so that
# it runs beside the runtime the suite preloads (asan: the shared runtime;
# tsan: its own static runtime, the preload dropped).
set -e
cd "$(dirname "$0")/.."
out=$(mktemp /tmp/channel_stress.XXXXXX)
trap 'rm -f "$out"' EXIT
inc=$(pkg-config --cflags luajit 2>/dev/null || echo -I/usr/include/luajit-2.1)
case "$FFIPAR_SANITIZER" in
  asan) cc="clang -fsanitize=address -shared-libasan -fno-omit-frame-pointer -O1" ;;
  tsan) cc="clang -fsanitize=thread -O1"; unset LD_PRELOAD ;;
  *)    cc="${CC:-cc} -O2" ;;
esac
$cc -std=c11 -g -Wall -Wextra -Icsrc $inc -o "$out" test/channel_stress.c csrc/*.c -pthread -lluajit-5.1 -lm
for i in 1 2 3; do "$out"; done
