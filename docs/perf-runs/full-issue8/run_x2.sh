#!/bin/bash
# Issue 8 on nvidia-h200-x2: the full MiniMax-M1 shapes (the release's config.json: 80 layers,
# 32 experts x 80, hidden 6144, vocab 200064) with synthetic weights (seed 1), each generated where
# it lives: the 2560 experts in int4 on two GPU workers (1280 each, generated on their GPU, nothing
# on the host), the attention stack, routers and LM head on a CPU coordinator (bf16 weights, 28
# threads) — the GPU coordinator of issue 7 is not wired into the engine yet. TCP on loopback.
# Copied into the carry folder by tests/gpu/device_pack.sh; writes under $OUT.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
nproc; free -g | head -2

mkcfg() { # name micro_batches max_seqs max_context max_batch_tokens
  cat > "$OUT/$1.cfg" <<EOF
cluster = { name = "m1-full-x2"; model = "$C/m1"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7400"; backend = "cpu"; threads = 28; micro_batches = $2;
  max_seqs = $3; max_context = $4; max_batch_tokens = $5; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = (
  { name = "g0"; data_listen = "127.0.0.1:7410"; backend = "cuda-int4"; gpu = 0; threads = 2; },
  { name = "g1"; data_listen = "127.0.0.1:7411"; backend = "cuda-int4"; gpu = 1; threads = 2; }
);
EOF
}

# start NAME: the coordinator and both workers; waits (<= 300 s) until status says HEALTHY
start() {
  local cfg=$OUT/$1.cfg t0=$(date +%s.%N)
  $B/moerack-coordinator --config $cfg --log-level info > $OUT/$1-coord.log 2>&1 & PIDS="$!"
  for w in g0 g1; do
    $B/moerack-worker --config $cfg --name $w --log-level info > $OUT/$1-$w.log 2>&1 & PIDS="$PIDS $!"
  done
  for i in $(seq 1 600); do
    $B/moerack status --config $cfg > $OUT/$1-status.txt 2>&1 && break
    if (( i % 40 == 0 )); then tail -2 $OUT/$1-status.txt; fi
    sleep 0.5
  done
  echo "== $1: cluster up after $(python3 -c "print(round($(date +%s.%N) - $t0, 1))") s"
  cat $OUT/$1-status.txt
  grep -h "memory plan\|experts on the GPU\|synthetic" $OUT/$1-*.log | cut -c1-240
  nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
}
stop() { kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null; }

for mb in 2 1; do
  mkcfg decode-mb$mb $mb 64 256 2048
  start decode-mb$mb
  echo "== decode, micro_batches = $mb (prompt 8 ids, 8 new tokens)"
  timeout 200 $B/moerack bench load --config $OUT/decode-mb$mb.cfg --concurrency 1,16,64 \
    --prompt-len 8 --decode 8 --vocab 200064
  $B/moerack status --config $OUT/decode-mb$mb.cfg
  stop
done
mkcfg ttft 2 1 8400 2048
start ttft
echo "== time to first token (prompt, 1 new token)"
timeout 200 $B/moerack bench load --config $OUT/ttft.cfg --concurrency 1 --prompt-len 8 --decode 2 \
  --ttft 1024,4096 --vocab 200064
$B/moerack status --config $OUT/ttft.cfg
stop
echo "== done"
