#!/bin/bash
# The tile kernel (wq_tile.cu) for experts with many tokens: correctness against kernels/ref for
# every format/path, then the MoE layer at real dims for every variant, with the PyTorch peer in
# the same run. Packed with tests/gpu/device_pack.sh build DIR; run from DIR on the GPU machine.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/tile1; mkdir -p $O
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
timeout 240 $B/test_cuda_experts > $O/test_experts.log 2>&1; echo "test rc=$?"
grep -E "worst|FAIL" $O/test_experts.log | head -30; tail -1 $O/test_experts.log
T=1,2,4,8,16,32,64,128,256,512,1024,2048,4096,8192
timeout 120 python3 $C/peer_grouped_mm.py --tokens $T --csv $O/peer.csv > $O/peer.log 2>&1; echo "peer rc=$?"
timeout 300 $B/bench_cuda_experts --formats int8,int4,bf16 --tokens $T --peer $O/peer.csv --csv $O/experts.csv > $O/bench.log 2>&1; echo "bench rc=$?"
grep -E "^(int8|int4|bf16) .* (auto|tiled|wq\+deq|gemm|split|split-old) " $O/bench.log
tar -C $OUT -czf $OUT/tile1.tgz tile1
