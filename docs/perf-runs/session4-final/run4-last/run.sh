#!/bin/bash
# Last check of main after the int8 GEMV removal: kernels' tests, goldens, graph bitwise.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/last; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 $B/test_cuda_coord_ops > $O/test_coord.log 2>&1; echo "coord rc=$?"; tail -1 $O/test_coord.log
timeout 120 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "experts rc=$?"; tail -1 $O/test_experts.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
for p in tiny small; do
  skip=""; [ $p = small ] && skip="--skip len1"
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend cuda --tol 1e-3 > $O/g_${p}_cuda.log 2>&1; echo "golden $p cuda rc=$?"
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend cuda-gpu --tol 2e-2 --near-ties $skip > $O/g_${p}_gpu.log 2>&1; echo "golden $p cuda-gpu rc=$?"
done
timeout 60 $B/moerack run --model $W/tiny --ids 5,17,300 --greedy 8 --backend cuda-int4 > $O/run_int4.log 2>&1; echo "run tiny cuda-int4 rc=$?"; tail -1 $O/run_int4.log
timeout 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g > $O/graph.log 2>&1; echo "graph_check rc=$?"; tail -1 $O/graph.log
tar -C $OUT -czf $OUT/last.tgz last && rm -rf $O
