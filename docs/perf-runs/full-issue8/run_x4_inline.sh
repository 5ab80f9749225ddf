#!/bin/bash
# Issue 8, session 6, on nvidia-h200-x4 (an experiment, reverted after this run: no gain, worse at
# 16-64 tokens): decode with the dispatcher's small batches sent and received on the step thread (no
# pool wake-ups below 512 KiB of activations), commit 53ace91; the whole model, coordinator
# GPU 0, cuda-int4 workers on GPUs 1-3, f32 wire, micro_batches 1 and 2, decode only. Before: run 9.
C=$(cd "$(dirname "$0")" && pwd); R=/tmp/x4; mkdir -p $R
GPUS=4 MBS="1 2" TAG=-int4-inline R=$R SKIPTTFT=1 SKIP32K=1 bash $C/run_x8.sh cuda-int4
cp $R/coord-*.log $OUT/; tar -C $R -czf $OUT/rest.tgz .
