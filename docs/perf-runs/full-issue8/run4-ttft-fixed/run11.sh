#!/bin/bash
# Long-prompt time to first token, located: (A) the single-process GPU engine (cuda-gpu) on the
# 80-layer model with two experts per layer, prefill of 1024 and 8192 tokens; (B) the cluster path
# on one GPU (8 full-width layers, 32 experts: coordinator cuda-gpu + one cuda-int4 worker, TCP
# loopback), TTFT 1024 / 4096 / 8192.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/ttft11; mkdir -p $O
CFG=$O/l8.cfg
cat > $CFG <<EOF
cluster = { name = "m1-l8"; model = "$C/m1l8"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7400"; backend = "cuda-gpu"; threads = 8; micro_batches = 2;
  max_seqs = 8; max_context = 9000; max_batch_tokens = 4096; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = ( { name = "g1"; data_listen = "127.0.0.1:7411"; backend = "cuda-int4"; gpu = 0; threads = 4; } );
EOF
$B/moerack-coordinator --config $CFG --log-level debug > $O/coord.log 2>&1 & P1=$!
$B/moerack-worker --config $CFG --name g1 --log-level info > $O/g1.log 2>&1 & P2=$!
for i in $(seq 1 200); do $B/moerack status --config $CFG > /dev/null 2>&1 && break; sleep 0.5; done
echo "== B: cluster on one GPU, 8 layers"
timeout 60 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 4 --vocab 200064 | tail -2
for n in 1024 4096 8192; do
  t0=$(date +%s%N)
  timeout 120 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 2 --ttft $n --vocab 200064 | tail -1
  echo "ttft $n: rc=$? wall $(( ($(date +%s%N) - t0) / 1000000 )) ms"
done
kill $P1 $P2; wait
grep -c "" $O/coord.log; grep -i -E "step|prefill|chunk" $O/coord.log | tail -20 | cut -c1-200
tar -C $OUT -czf $OUT/ttft11.tgz ttft11
