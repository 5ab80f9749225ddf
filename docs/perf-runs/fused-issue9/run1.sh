#!/bin/bash
# Issue 9, session 7: the one-kernel path for MoE calls of few tokens (wq_decode.cu). On one
# GPU: every expert path against kernels/ref (test_cuda_experts: auto = fused where it applies,
# wq = the previous route), goldens on cuda-int8 / cuda-int4, a 2-worker cluster on cuda-int4,
# then the MoE layer at real dims, int8 and int4, 1–64 tokens (auto vs nofuse in the same run)
# with the PyTorch peer. Carry: .device-carry (pack.txz = bin/ + lib/ from tests/gpu/device_pack.sh,
# golden/, peer_grouped_mm.py).
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/fused; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
T=${TOKENS:-1,2,4,8,16,32,64}
timeout 60 $B/bench_cuda_experts --formats int4 --tokens 1 > $O/smoke.log 2>&1; echo "smoke rc=$?"; grep -E "^int4 " $O/smoke.log
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 240 $B/bench_cuda_experts --formats int8,int4 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4) .* (auto|nofuse|wq|split) " $O/bench.log
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test_cuda_experts rc=$?"; grep -c FAIL $O/test_experts.log; grep worst $O/test_experts.log; tail -1 $O/test_experts.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
for be in cuda-int8 cuda-int4; do
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend $be --tol 2e-2 --near-ties > $O/golden_$be.log 2>&1; echo "golden tiny $be rc=$?"
done
timeout 120 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/cl --workers 2 --worker-backend cuda-int4 --tol 2e-2 equivalence > $O/cluster_int4.log 2>&1; echo "cluster 2w cuda-int4 rc=$?"; grep -E "PASS|FAIL" $O/cluster_int4.log | head -4
tar -C $OUT -czf $OUT/fused.tgz fused
