# Channel-specific targets (included by the Makefile).
#
# make tsan-exe: the whole suite under ThreadSanitizer through
# test/tsan_luajit.c, an instrumented stand-in for the luajit executable
# (`make tsan` preloads the runtime into the stock luajit, which clang 14's
# runtime does not survive). The shim is built with -fsanitize=thread and
# binds to the runtime linked into the executable.
TSAN_EXE = build/tsan_luajit

$(TSAN_EXE): test/tsan_luajit.c
	mkdir -p build
	clang -O1 -g -fsanitize=thread -rdynamic $(LUAJIT_INC) -o $@ $< -lluajit-5.1 -lm -ldl -pthread

tsan-exe:
	$(MAKE) EXTRA_DEPS="$(DEPS_SAN)" deps
	$(MAKE) clean
	$(MAKE) $(TSAN_EXE)
	$(MAKE) CC=clang CFLAGS="-O1 -g -fsanitize=thread" SHIM_LDFLAGS="-pthread -Wl,-z,nodelete" all
	$(RUN) TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" FFIPAR_SANITIZER=tsan \
	  FFIPAR_LUAJIT="$(CURDIR)/$(TSAN_EXE)" $(TSAN_EXE) test/run.lua $(TESTFLAGS)
	$(MAKE) clean

.PHONY: tsan-exe
