#!/bin/bash
# Issue 8, session 6, on nvidia-h200-x4 (the eight-GPU kind was no longer lent for a third call):
# the checks of the device-side wire conversion (moe_io) on GPU 1 — test_cuda_rx bit for bit
# against the host path, a 2-worker cluster of cuda-fast workers with bf16 on the wire against the
# tiny goldens — then the whole model on four GPUs (coordinator GPU 0, int4 workers on GPUs 1-3)
# as in run 5 (cuda-int4, f32 wire: before = run 5, TTFT 1K 3.60 s / 8K 31.8 s) and in the serving
# setting (cuda-int4-fast, bf16 wire converted on the workers' GPUs), micro_batches 2.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin; R=/tmp/x4; mkdir -p $R $R/w
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
CUDA_VISIBLE_DEVICES=1 timeout 60 $B/test_cuda_rx > $OUT/checks.txt 2>&1; echo "test_cuda_rx rc=$?" >> $OUT/checks.txt
$B/moerack model gen-tiny $R/w/tiny --preset tiny > /dev/null 2>&1
CUDA_VISIBLE_DEVICES=1 timeout 120 $B/cluster_check --bin-dir $B --model $R/w/tiny --golden $C/golden/tiny \
  --work $R/w/cl --workers 2 --worker-backend cuda-fast --wire-dtype bf16 --tol 0.15 equivalence >> $OUT/checks.txt 2>&1
echo "cluster cuda-fast wire bf16 rc=$?" >> $OUT/checks.txt
cat $OUT/checks.txt
T0=$(date +%s)
GPUS=4 MBS=2 TAG=-int4-f32 R=$R SKIP32K=1 bash $C/run_x8.sh cuda-int4
GPUS=4 WIRE=bf16 MBS=2 TAG=-int4fast-bf16 R=$R RUN_SECONDS=$(( 520 - ($(date +%s) - T0) )) bash $C/run_x8.sh cuda-int4-fast
cp $R/coord-*.log $OUT/; tar -C $R --exclude=w -czf $OUT/rest.tgz .
