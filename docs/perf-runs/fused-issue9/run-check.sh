#!/bin/bash
# Issue 9, session 7: correctness and speed of the expert kernels on one GPU, as one run —
#   run-check.sh TAG        (output under $OUT/TAG: the runs below used final7 … final13)
# every expert path against kernels/ref (test_cuda_experts), goldens on cuda-int8 / cuda-int4 (int4
# drifts on the tiny goldens: the accuracy table), a 2-worker cluster on cuda-int8, then the MoE
# layer at real dims, 1–8192 tokens, int8 and int4, with the PyTorch peer in the same run.
# The same script ran on each state of the code; what differed was the build:
#   run 7a (c89dda9, logs run7a-scale-prefetch/): int4 lop3 pair, int8 pack by byte permute, int4
#          group scales loaded one unit ahead;
#   run 7  (e1c2e0e, run7-final/): the scale prefetch reverted;
#   run 8  (f7ff7f5, run8-final/): the byte-permute pack reverted — the lop3 change alone;
#   run 10 (b4dbbca, run10-final/): the wq launch split from the run-9 sweep;
#   run 11 (c7fa1bd, run11-final/): int8's 8-warp split only at nt 1;
#   run 13 (dabc305, run13-final/): int4 at 3–4 experts on 8 warps of >= 8 units (run-12 sweep).
# Carry: .device-carry (pack.txz = bin/ + lib/ of tests/gpu/device_pack.sh, golden/,
# peer_grouped_mm.py).
TAG=${1:?usage: run-check.sh TAG}
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/$TAG; mkdir -p $O; W=/tmp/w; mkdir -p $W
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
T=${TOKENS:-1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192}
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 420 $B/bench_cuda_experts --formats int8,int4 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4) .* (auto|split) " $O/bench.log
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test_cuda_experts rc=$?"; grep -c FAIL $O/test_experts.log; grep worst $O/test_experts.log | grep int; tail -1 $O/test_experts.log
$B/moerack model gen-tiny $W/tiny --preset tiny > /dev/null 2>&1
for be in cuda-int8 cuda-int4; do
  timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend $be --tol 2e-2 --near-ties > $O/golden_$be.log 2>&1; echo "golden tiny $be rc=$?"; grep -m1 -E "FAIL|PASS" $O/golden_$be.log
done
timeout 120 $B/cluster_check --bin-dir $B --model $W/tiny --golden $C/golden/tiny --work $W/cl --workers 2 --worker-backend cuda-int8 --tol 2e-2 equivalence > $O/cluster_int8.log 2>&1; echo "cluster 2w cuda-int8 rc=$?"; grep -E "PASS|FAIL" $O/cluster_int8.log | head -3
tar -C $OUT -czf $OUT/$TAG.tgz $TAG
