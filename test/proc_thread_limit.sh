# Reaching the thread limit is a clear error, not "system call failed": a
# child process with a low address-space limit (ulimit -v: thread stacks
# cannot be mapped, so pthread_create fails with EAGAIN as it does at
# RLIMIT_NPROC, which root is exempt from) runs test/thread_limit.lua.
# Skipped under the sanitizers, whose shadow memory needs the address space.
set -u
if [ -n "${FFIPAR_SANITIZER:-}" ]; then echo "skipped under $FFIPAR_SANITIZER"; exit 0; fi
LUAJIT=${FFIPAR_LUAJIT:-luajit}
(ulimit -v 300000 && exec timeout 60 $LUAJIT test/thread_limit.lua)
