#!/bin/bash
# The suite's model check of the color gate (partial safety searches with
# and without timeouts, and two mutants spin must reject); `make model`
# (in CI) runs the full set, complete searches included. See
# test/gate_model.sh.
exec bash "$(dirname "$0")/gate_model.sh" quick
