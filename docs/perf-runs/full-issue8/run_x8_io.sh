#!/bin/bash
# Issue 8, session 6, third eight-GPU call: the workers convert bf16 wire data on the GPU (moe_io)
# instead of on their host. First the checks (GPU 1): test_cuda_rx (moe_io bit for bit as the
# host conversions) and a 2-worker cluster of cuda-fast workers with bf16 on the wire against the
# tiny goldens; then the serving setting on all eight GPUs (cuda-fast, bf16 wire, micro_batches 2):
# decode at 1/16/64/256 and TTFT at 1K/8K/32K.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin; R=/tmp/x8; mkdir -p $R $R/w
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
CUDA_VISIBLE_DEVICES=1 timeout 60 $B/test_cuda_rx > $OUT/checks.txt 2>&1; echo "test_cuda_rx rc=$?" >> $OUT/checks.txt
$B/moerack model gen-tiny $R/w/tiny --preset tiny > /dev/null 2>&1
CUDA_VISIBLE_DEVICES=1 timeout 120 $B/cluster_check --bin-dir $B --model $R/w/tiny --golden $C/golden/tiny \
  --work $R/w/cl --workers 2 --worker-backend cuda-fast --wire-dtype bf16 --tol 0.15 equivalence >> $OUT/checks.txt 2>&1
echo "cluster cuda-fast wire bf16 rc=$?" >> $OUT/checks.txt
cat $OUT/checks.txt
WIRE=bf16 MBS=2 TAG=-io R=$R RUN_SECONDS=420 bash $C/run_x8.sh cuda-fast
cp $R/coord-*.log $OUT/; tar -C $R --exclude=w -czf $OUT/rest.tgz .
