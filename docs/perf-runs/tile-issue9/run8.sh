#!/bin/bash
# PDL + gather change: correctness (experts, coordinator goldens and graph capture on cuda-gpu),
# then small-token times with PDL on and off, then all sizes with the peer.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/tile8; mkdir -p $O; W=/tmp/w; mkdir -p $W
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test rc=$?"; grep -c FAIL $O/test_experts.log; tail -1 $O/test_experts.log
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend cuda-gpu --tol 2e-2 --near-ties > $O/golden_tiny.log 2>&1; echo "golden tiny cuda-gpu rc=$?"
timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/tiny --model $W/tiny --backend cuda-int8 --tol 2e-2 --near-ties > $O/golden_int8.log 2>&1; echo "golden tiny cuda-int8 rc=$?"
timeout 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/g > $O/graph.log 2>&1; echo "graph_check rc=$?"; tail -2 $O/graph.log
timeout 60 $B/test_cuda_coord_ops > $O/coord_ops.log 2>&1; echo "coord_ops rc=$?"; tail -1 $O/coord_ops.log
S=1,2,4,8,16,32
MOERACK_CUDA_PDL=0 timeout 120 $B/bench_cuda_experts --formats int8,int4 --tokens $S --peer $C/peer_run7.csv --csv $O/small_nopdl.csv > $O/small_nopdl.log 2>&1; echo "bench nopdl rc=$?"
timeout 120 $B/bench_cuda_experts --formats int8,int4 --tokens $S --peer $C/peer_run7.csv --csv $O/small_pdl.csv > $O/small_pdl.log 2>&1; echo "bench pdl rc=$?"
paste -d' ' <(grep -E "^(int8|int4) .* auto " $O/small_nopdl.log | awk '{print $1,$2,"nopdl",$4,$8}') <(grep -E "^(int8|int4) .* auto " $O/small_pdl.log | awk '{print "pdl",$4,$8}')
T=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 400 $B/bench_cuda_experts --formats int8,int4 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4) .* (auto|wq\+deq) " $O/bench.log
tar -C $OUT -czf $OUT/tile8.tgz tile8
