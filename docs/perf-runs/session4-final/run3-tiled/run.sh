#!/bin/bash
# int8/int4 weights in 2 KiB tiles (wq kernel loads 512 contiguous bytes per warp): tests + bench;
# plus the graph path re-checked after dropping the table zeroing.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/tiled; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 120 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test rc=$?"; grep -E "(int8|int4) .*worst|FAIL" $O/test_experts.log | head; tail -1 $O/test_experts.log
timeout 100 $B/bench_cuda_experts --formats int8,int4 --tokens 1,2,4,8,16,32,128,512,2048 --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E " (auto|wq|split|split-old|gemm) " $O/bench.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend cuda-gpu --tol 2e-2 --near-ties > $O/golden_tiny.log 2>&1; echo "golden tiny cuda-gpu rc=$?"
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/small --model $W/small --backend cuda-gpu --tol 2e-2 --near-ties --skip len1 > $O/golden_small.log 2>&1; echo "golden small cuda-gpu rc=$?"
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend cuda-int8 --tol 2e-2 --near-ties > $O/golden_int8.log 2>&1; echo "golden tiny cuda-int8 rc=$?"
timeout 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g > $O/graph.log 2>&1; echo "graph_check rc=$?"; tail -2 $O/graph.log
tar -C $OUT -czf $OUT/tiled.tgz tiled && rm -rf $O
