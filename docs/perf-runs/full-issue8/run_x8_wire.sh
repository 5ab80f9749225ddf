#!/bin/bash
# Issue 8, session 6, second eight-GPU call: the prefill data plane after three changes — the
# coordinator adds the workers' replies over threads (token ranges, same order), uploads the MoE
# sum straight from its pinned buffer, and can put bf16 on the wire (cluster.wire_dtype).
# Part 1: the run-6 setting again (bf16 experts with split activations, f32 wire, micro_batches 2)
# = the first two changes alone. Part 2: bf16 wire with the serving backend cuda-fast (bf16
# activations, which that backend rounds to anyway), micro_batches 1 and 2, with the 32K prompt.
C=$(cd "$(dirname "$0")" && pwd); R=/tmp/x8; mkdir -p $R; T0=$(date +%s)
MBS=2 TAG=-f32 R=$R SKIP32K=1 bash $C/run_x8.sh cuda
WIRE=bf16 MBS="1 2" TAG=-bf16 R=$R RUN_SECONDS=$(( 540 - ($(date +%s) - T0) )) bash $C/run_x8.sh cuda-fast
cp $R/coord-*.log $OUT/; tar -C $R -czf $OUT/rest.tgz .
