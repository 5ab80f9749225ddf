#!/bin/bash
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/tile7; mkdir -p $O
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv,noheader
timeout 300 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test rc=$?"
grep -E "FAIL" $O/test_experts.log | head; grep -E "(int8|int4) .*worst" $O/test_experts.log; tail -1 $O/test_experts.log
T=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 300 $B/bench_cuda_experts --formats int8,int4 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4) .* (auto|split|wq\+deq|split-old) " $O/bench.log
timeout 120 ncu --clock-control none --launch-skip 40 --launch-count 6 --metrics gpu__time_duration.sum $B/bench_cuda_experts --formats int8 --tokens 1 > $O/ncu_1tok.txt 2>&1; echo "ncu rc=$?"
grep -E "^\s+[a-z_]+.*\(|gpu__time_duration" $O/ncu_1tok.txt | head -24
tar -C $OUT -czf $OUT/tile7.tgz tile7
