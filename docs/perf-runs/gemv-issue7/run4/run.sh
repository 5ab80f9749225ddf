#!/bin/bash
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/gemv4; mkdir -p $O
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
step() { local name=$1 cap=$2; shift 2; local t0=$(date +%s)
  timeout -k 5 "$cap" "$@" > "$O/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - t0 )) s (cap $cap)" | tee -a $O/steps.txt; }
step test_coord 150 $B/test_cuda_coord_ops
grep -E "FAIL|fail" $O/test_coord.log | head; grep "GEMV kernel" $O/test_coord.log | head -20; tail -1 $O/test_coord.log
step test_experts 200 $B/test_cuda_experts
grep -E "FAIL|fail|bf16 .*worst" $O/test_experts.log | head; tail -1 $O/test_experts.log
for p in tiny small; do $B/moerack model gen-tiny /tmp/$p --preset $p > /dev/null 2>&1; done
for p in tiny small; do
  step golden_${p}_cuda 90 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model /tmp/$p --backend cuda --tol 1e-3
  skip=""; [ $p = small ] && skip="--skip len1"
  step golden_${p}_cuda-gpu 90 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model /tmp/$p --backend cuda-gpu --tol 2e-2 --near-ties $skip
done
step bench_linear 150 $B/bench_cuda_linear --n 1,2,3,4,6,8,16,64 --json $O/linear.jsonl
grep -vE '^\{' $O/bench_linear.log | grep -E "qkv|lm_head|n  *[0-9]+:|^proj"
step bench_experts 150 $B/bench_cuda_experts --formats bf16 --tokens 1,2,4,8,16,32,64 --csv $O/experts.csv
grep -E "split|^fmt" $O/bench_experts.log | head -30
step fwd_new 150 $B/moerack bench forward --model synthetic:1:$C/m1s8 --backend cuda-gpu --prompt-len 2048 --chunk 2048 --decode 64
tail -3 $O/fwd_new.log
tar -C $OUT -czf $OUT/gemv4.tgz gemv4 && rm -rf $O
