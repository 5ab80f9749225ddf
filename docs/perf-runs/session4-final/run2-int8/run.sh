#!/bin/bash
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/int8; mkdir -p $O
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test rc=$?"; grep -E "int8 .*worst|FAIL" $O/test_experts.log | head; tail -1 $O/test_experts.log
timeout 90 $B/bench_cuda_experts --formats int8 --tokens 1,2,4,8,16,32 --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E " (split|split-old|auto) " $O/bench.log
tar -C $OUT -czf $OUT/int8.tgz int8
