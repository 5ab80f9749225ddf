#!/bin/bash
# Issue 8 on nvidia-h200-x4, time to first token after the TCP full-duplex fix (run 5): the whole MiniMax-M1 (the release's config.json: 80 layers, 2560
# experts, full widths), synthetic weights generated where they are kept: the coordinator on GPU 0
# (backend cuda-gpu: attention stack, routers, LM head, states, KV cache on the GPU) and three
# workers on GPUs 1-3 (cuda-int4: 853-854 experts each, generated and quantised on their GPU), TCP
# on loopback. Copied into the carry folder with the binaries and m1/config.json; writes under $OUT.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
CFG=$OUT/m1x4.cfg
cat > $CFG <<EOF
cluster = { name = "m1-x4"; model = "$C/m1"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7400"; backend = "cuda-gpu"; threads = 16; micro_batches = 2;
  max_seqs = 4; max_context = 33000; max_batch_tokens = 4096; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = (
  { name = "g1"; data_listen = "127.0.0.1:7411"; backend = "cuda-int4"; gpu = 1; threads = 4; },
  { name = "g2"; data_listen = "127.0.0.1:7412"; backend = "cuda-int4"; gpu = 2; threads = 4; },
  { name = "g3"; data_listen = "127.0.0.1:7413"; backend = "cuda-int4"; gpu = 3; threads = 4; }
);
EOF
t0=$(date +%s)
$B/moerack-coordinator --config $CFG --log-level info > $OUT/coord.log 2>&1 & PIDS="$!"
for w in g1 g2 g3; do
  $B/moerack-worker --config $CFG --name $w --log-level info > $OUT/$w.log 2>&1 & PIDS="$PIDS $!"
done
for i in $(seq 1 600); do
  $B/moerack status --config $CFG > $OUT/status-up.txt 2>&1 && break
  kill -0 ${PIDS%% *} 2>/dev/null || { echo "coordinator exited"; tail -5 $OUT/coord.log; break; }
  sleep 0.5
done
echo "== cluster up after $(( $(date +%s) - t0 )) s"
cat $OUT/status-up.txt
grep -h "memory plan\|experts on the GPU\|generated" $OUT/*.log | cut -c1-240 | head -12
echo "== warm-up"
timeout 60 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 4 --vocab 200064 | tail -1
echo "== time to first token (prompt, 1 new token)"
timeout 240 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 2 \
  --ttft 1024,8192,32768 --vocab 200064
kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
echo "== done after $(( $(date +%s) - t0 )) s"
