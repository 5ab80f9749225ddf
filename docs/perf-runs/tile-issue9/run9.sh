#!/bin/bash
# Session 6 check of HEAD on one H200: the wq launchers' shared argument check / shared-memory
# opt-in (wq_frag.cuh) and everything since, before anything else is built on them: every expert
# path against kernels/ref, goldens on cuda-gpu / cuda-int8 / cuda-int4, the coordinator
# ops, graph capture; then the MoE layer at
# real dims with the PyTorch peer in the same run. Packed with tests/gpu/device_pack.sh.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/tile9; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test_cuda_experts rc=$?"; grep -c FAIL $O/test_experts.log; tail -1 $O/test_experts.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
for be in cuda-gpu cuda-int8 cuda-int4; do
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend $be --tol 2e-2 --near-ties > $O/golden_$be.log 2>&1; echo "golden tiny $be rc=$?"
done
timeout 120 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/cl --workers 2 --worker-backend cuda-int4 --tol 2e-2 equivalence > $O/cluster_int4.log 2>&1; echo "cluster 2w cuda-int4 rc=$?"; grep -E "PASS|FAIL" $O/cluster_int4.log | head -8
timeout 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g > $O/graph.log 2>&1; echo "graph_check rc=$?"; tail -2 $O/graph.log
timeout 60 $B/test_cuda_coord_ops > $O/coord_ops.log 2>&1; echo "coord_ops rc=$?"; tail -1 $O/coord_ops.log
T=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 300 $B/bench_cuda_experts --formats int8,int4,bf16 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4|bf16) .* auto " $O/bench.log
tar -C $OUT -czf $OUT/tile9.tgz tile9
