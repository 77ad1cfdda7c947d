# The color gate's make targets.
#
# `make model`: every spin check of test/gate.pml (safety, liveness,
# saturation, mutants, partial 4-thread runs); the suite runs the quick
# subset (test/proc_gate_model.sh). The gate's C stress test, its capped
# variant and its mutants (test/c/gate_*.c) run in make test, make asan and
# make tsan like every C test.
model: deps
	bash test/gate_model.sh full

.PHONY: model
