#!/bin/bash
# device run 3: correctness (new split-K kernel), end to end on GPU backends, quant accuracy, peer + bench
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
echo "== test"; (time timeout 200 $B/test_cuda_experts) > $OUT/test.log 2>&1; echo "test rc=$?"
grep -E "worst|differ|FAIL|refuse|passed|FAILED|SKIP|real" $OUT/test.log | head -40
mkdir -p /tmp/ck; for p in tiny small; do $B/moerack model gen-tiny /tmp/ck/$p --preset $p --seed 1 >/dev/null || echo "gen $p failed"; done
{
echo "== goldens, in-process, experts on the GPU (bf16)"
for p in tiny small; do timeout 60 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model /tmp/ck/$p --backend cuda --tol 1e-3; echo "golden $p cuda rc=$?"; done
echo "== cluster: 2 workers with backend cuda vs single-process cpu"
timeout 120 $B/cluster_check --bin-dir $B --model /tmp/ck/tiny --golden $C/golden/tiny --work /tmp/cc --workers 2 --worker-backend cuda --tol 1e-3 equivalence; echo "cluster rc=$?"
grep -h -i "gpu\|cuda" /tmp/cc/*/w*.log | head -6
echo "== quantisation accuracy"
timeout 150 python3 $C/quant_accuracy.py --moerack $B/moerack --golden $C/golden/tiny --model /tmp/ck/tiny --golden $C/golden/small --model /tmp/ck/small; echo "quant rc=$?"
} > $OUT/e2e.log 2>&1
cat $OUT/e2e.log
echo "== peer"; PYTHONUNBUFFERED=1 timeout 100 python3 $C/peer_grouped_mm.py --csv $OUT/peer.csv > $OUT/peer.log 2>&1; echo "peer rc=$?"; cat $OUT/peer.log
echo "== bench"; timeout 150 $B/bench_cuda_experts --peer $OUT/peer.csv --csv $OUT/bench.csv > $OUT/bench.log 2>&1; echo "bench rc=$?"; cat $OUT/bench.log
