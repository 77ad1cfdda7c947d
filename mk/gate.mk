# The color gate's make targets.
#
# `make model`: every spin check of test/gate.pml (safety, liveness,
# saturation, mutants, partial 4-thread runs); the suite runs the quick
# subset (test/proc_gate_model.sh).
#
# `make gate-tsan`: the gate's C stress test, its capped variant and its
# mutants under ThreadSanitizer, without the luajit preload that `make tsan`
# uses (on some kernels luajit itself crashes under that preload).
GATE_CTESTS = $(patsubst test/c/%.c,test/c/%,$(wildcard test/c/gate_*.c))

model: deps
	bash test/gate_model.sh full

gate-tsan:
	rm -f $(GATE_CTESTS)
	$(MAKE) CC=clang CTEST_CFLAGS="-fsanitize=thread" $(GATE_CTESTS)
	@for t in $(GATE_CTESTS); do \
	  TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0" FFIPAR_SANITIZER=tsan \
	    timeout 300 ./$$t || exit 1; done
	rm -f $(GATE_CTESTS)

# Under `make asan` the suite preloads the shared ASan runtime; a C test
# linked with the static one then aborts ("incompatible ASan runtimes"), so
# the gate's C tests link the shared runtime too.
ifneq ($(findstring -fsanitize=address,$(CTEST_CFLAGS)),)
$(GATE_CTESTS): override CTEST_CFLAGS += -shared-libasan
endif

.PHONY: model gate-tsan
