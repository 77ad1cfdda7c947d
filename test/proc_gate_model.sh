#!/bin/bash
# The suite's model check of the color gate (complete safety searches with
# and without timeouts, and two mutants spin must reject); `make model`
# runs the full set. See test/gate_model.sh.
exec bash "$(dirname "$0")/gate_model.sh" quick
