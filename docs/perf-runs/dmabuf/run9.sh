#!/bin/bash
# After merging the dmabuf branch: its GPU tests, and the expert executor / worker / coordinator
# checks on the merged tree.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/merge9; mkdir -p $O; W=/tmp/w; mkdir -p $W
timeout 120 $B/test_cuda_dmabuf > $O/dmabuf.log 2>&1; echo "test_cuda_dmabuf rc=$?"; tail -5 $O/dmabuf.log
timeout 120 $B/test_cuda_rx > $O/rx.log 2>&1; echo "test_cuda_rx rc=$?"; tail -5 $O/rx.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
for be in cuda cuda-int8 cuda-gpu; do
  timeout 90 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend $be --tol 2e-2 --near-ties > $O/golden_$be.log 2>&1; echo "golden tiny $be rc=$?"
done
timeout 120 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/cc --workers 2 --worker-backend cuda --tol 1e-3 equivalence > $O/cluster.log 2>&1; echo "cluster_check 2 workers cuda rc=$?"; tail -3 $O/cluster.log
tar -C $OUT -czf $OUT/merge9.tgz merge9
