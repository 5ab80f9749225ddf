#!/bin/bash
# Issue 9, session 7: the one-kernel path for few tokens (wq_decode.cu, removed in 3634033) against
# the wq kernel pair it would replace — run-fused.sh TAG — test_cuda_experts (auto = the one-kernel
# path where it applies), the int8 golden, then the MoE layer at real dims, auto vs nofuse in the
# same run. Runs at the commits that had it (the bench's `nofuse` variant went with it):
#   run 2 (f602e92, run2/): weight tiles staged by cp.async in a 5-unit ring per warp;
#   run 4 (b7ff05f, run4/): 4 warps on 4 row blocks sharing each unit's activations, block ring;
#   run 5 (91d5f69, run5/, TOKENS=1,2,4,8,16,32,64,512,2048,8192): work items from a counter,
#          and the int4 lop3 pair / int8 byte-permute pack in every kernel.
# (run 1: run1.sh, which also ran the int4 goldens and cluster.) Carry as run-check.sh.
TAG=${1:?usage: run-fused.sh TAG}
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/$TAG; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
T=${TOKENS:-1,2,4,8,16,32,64}
timeout 60 $B/bench_cuda_experts --formats int4 --tokens 1 > $O/smoke.log 2>&1; echo "smoke rc=$?"; grep -E "^int4 .*(auto|nofuse)" $O/smoke.log
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 400 $B/bench_cuda_experts --formats int8,int4 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4) .* (auto|nofuse) " $O/bench.log
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test_cuda_experts rc=$?"; grep -c FAIL $O/test_experts.log; grep worst $O/test_experts.log | grep int; tail -1 $O/test_experts.log
$B/moerack model gen-tiny $W/tiny --preset tiny > /dev/null 2>&1
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend cuda-int8 --tol 2e-2 --near-ties > $O/golden_cuda-int8.log 2>&1; echo "golden tiny cuda-int8 rc=$?"
tar -C $OUT -czf $OUT/$TAG.tgz $TAG
