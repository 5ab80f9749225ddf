#!/bin/bash
# Issue 7, sampling on the device: the GPU test, the benchmark, the scheduler's two paths on
# cuda-gpu. Logs into $OUT/sample-logs.tgz.
set -o pipefail
D=$(cd "$(dirname "$0")" && pwd)
export LD_LIBRARY_PATH=$D/lib:${LD_LIBRARY_PATH:-}
L=$OUT/sample
mkdir -p $L
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv >$L/gpu.txt 2>&1
cat $L/gpu.txt
echo "== test_cuda_sample"
timeout 100 $D/bin/test_cuda_sample >$L/test_cuda_sample.log 2>&1
echo "rc $?" | tee -a $L/test_cuda_sample.log
grep -c FAIL $L/test_cuda_sample.log
grep FAIL $L/test_cuda_sample.log | head -12
grep -v " E " $L/test_cuda_sample.log | tail -18
echo "== bench_cuda_sample"
timeout 120 $D/bin/bench_cuda_sample --batches 1,4,16,32,64,128,256 --json $L/bench_cuda_sample.jsonl 2>&1 | grep -v '^{' | tee $L/bench_cuda_sample.log
echo "== sample_path_check on cuda-gpu"
W=/tmp/w
mkdir -p $W
for p in tiny demo; do
  $D/bin/moerack model gen-tiny $W/$p --preset $p --seed 1 >/dev/null 2>&1
  timeout 30 $D/bin/sample_path_check --model $W/$p --backend cuda-gpu --tol 1e-4 >$L/sample_path_$p.log 2>&1
  echo "$p rc $?"
  grep -v " I " $L/sample_path_$p.log | tail -12; grep "sampling on" $L/sample_path_$p.log
done
tar -C $OUT -czf $OUT/sample-logs.tgz sample && rm -rf $L
