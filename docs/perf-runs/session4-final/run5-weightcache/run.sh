#!/bin/bash
# After the shared weight cache (cuda-full and cuda-gpu) and the shared split-projection args.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/wc; mkdir -p $O; W=/tmp/w; mkdir -p $W
timeout 60 $B/test_cuda_coord_ops --quick > $O/test_coord.log 2>&1; echo "coord rc=$?"; tail -1 $O/test_coord.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
for p in tiny small; do for be in cuda-full cuda-gpu; do
  skip=""; [ $p = small ] && skip="--skip len1"
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model $W/$p --backend $be --tol 2e-2 --near-ties $skip > $O/g_${p}_$be.log 2>&1; echo "golden $p $be rc=$?"
done; done
timeout 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g > $O/graph.log 2>&1; echo "graph_check rc=$?"
tar -C $OUT -czf $OUT/wc.tgz wc
