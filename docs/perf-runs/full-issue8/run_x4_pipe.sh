#!/bin/bash
# Issue 8, session 6, on nvidia-h200-x4: the dispatcher lets micro-batch B's request cross the
# reply to A over TCP (settle() in coordinator/dispatcher.c); the whole model on four GPUs
# (coordinator GPU 0, cuda-int4 workers on GPUs 1-3, f32 wire, micro_batches 2) — the setting of
# run 8's first part, which is the before.
C=$(cd "$(dirname "$0")" && pwd); R=/tmp/x4; mkdir -p $R
GPUS=4 MBS=2 TAG=-int4-f32-pipe R=$R RUN_SECONDS=400 bash $C/run_x8.sh cuda-int4
cp $R/coord-*.log $OUT/; tar -C $R -czf $OUT/rest.tgz .
