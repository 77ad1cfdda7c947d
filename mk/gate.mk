# The color gate's model check: `make model` runs every spin check of
# test/gate.pml (safety, liveness, saturation, mutants, 4 threads); the
# suite runs the quick subset (test/proc_gate_model.sh).
model: deps
	bash test/gate_model.sh full

.PHONY: model
