#!/bin/bash
# Issue 8 on nvidia-h200-x2, the slice the issue asks for: the coordinator on GPU 0 (backend
# cuda-gpu: weights, states and KV cache resident) and one worker on GPU 1 (cuda-int4, its 1280
# experts generated on the GPU), MiniMax-M1's full widths with the first 40 of its 80 layers (the
# experts of 40 layers are what one H200 holds in int4), synthetic weights, TCP on loopback.
# Copied into the carry folder; writes under $OUT.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader

mkcfg() { # name micro_batches max_seqs max_context max_batch_tokens
  cat > "$OUT/$1.cfg" <<EOF
cluster = { name = "m1-slice-x2"; model = "$C/m1s"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7400"; backend = "cuda-gpu"; threads = 16; micro_batches = $2;
  max_seqs = $3; max_context = $4; max_batch_tokens = $5; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = (
  { name = "g1"; data_listen = "127.0.0.1:7411"; backend = "cuda-int4"; gpu = 1; threads = 4; }
);
EOF
}
start() {
  local cfg=$OUT/$1.cfg t0=$(date +%s)
  $B/moerack-coordinator --config $cfg --log-level info > $OUT/$1-coord.log 2>&1 & PIDS="$!"
  $B/moerack-worker --config $cfg --name g1 --log-level info > $OUT/$1-g1.log 2>&1 & PIDS="$PIDS $!"
  for i in $(seq 1 400); do
    $B/moerack status --config $cfg > $OUT/$1-status.txt 2>&1 && break
    kill -0 ${PIDS%% *} 2>/dev/null || { echo "coordinator exited"; tail -5 $OUT/$1-coord.log; break; }
    sleep 0.5
  done
  echo "== $1: cluster up after $(( $(date +%s) - t0 )) s"
  cat $OUT/$1-status.txt
  grep -h "memory plan\|experts on the GPU" $OUT/$1-*.log | cut -c1-260
}
stop() { kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null; nvidia-smi --query-gpu=index,memory.used --format=csv,noheader; }

for mb in 2 1; do
  mkcfg decode-mb$mb $mb 256 64 4096
  start decode-mb$mb
  echo "== decode, micro_batches = $mb (prompt 16 ids, 16 new tokens)"
  timeout 150 $B/moerack bench load --config $OUT/decode-mb$mb.cfg --concurrency 1,16,64,256 \
    --prompt-len 16 --decode 16 --vocab 200064
  $B/moerack status --config $OUT/decode-mb$mb.cfg | head -4
  stop
done
mkcfg ttft 2 1 33000 4096
start ttft
echo "== time to first token (prompt, 1 new token)"
timeout 200 $B/moerack bench load --config $OUT/ttft.cfg --concurrency 1 --prompt-len 16 --decode 2 \
  --ttft 1024,8192,32768 --vocab 200064
$B/moerack status --config $OUT/ttft.cfg | head -4
stop
echo "== done"
