#!/bin/bash
# Time to first token of the whole MiniMax-M1 (80 layers, synthetic weights) on nvidia-h200-x4 —
# the run3-x4 layout (coordinator cuda-gpu on GPU 0, three cuda-int4 workers, TCP on loopback) —
# with the coordinator at --log-level debug, so each prefill step's wall time comes out split
# into attention (lightning / softmax), MoE staging, dispatch and combine (coordinator/step_prof.h).
# Before the cluster, bench_cuda_attention times the prefill kernels alone at the same lengths.
#
# Carry folder as for run_x4_gpu.sh: bin/ (moerack, moerack-coordinator, moerack-worker and
# bench_cuda_attention from build/tests/bench), lib/, m1/config.json; writes under $OUT.
#   LENS="1024 8192"        prompt lengths (each: one `bench load --ttft`, best of 2)
#   LENS="1024 8192 32768"  adds 32K (max_context is set for it; ~4 min more if prefill is linear)
#   MB=1                    micro_batches = 1: with binaries from before the dispatcher fix
#                           (branch ttft) 8K should then finish; with MB=2 they hang at 8K
#   TTFT_LIMIT=240          seconds allowed per length (both rounds)
C=$(cd "$(dirname "$0")" && pwd); B=${B:-$C/bin}
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
LENS=${LENS:-1024 8192}; MB=${MB:-2}; TTFT_LIMIT=${TTFT_LIMIT:-240}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
t0=$(date +%s)

echo "== prefill kernels alone (GPU 0): lightning (lp) and softmax (sp) prefill of one sequence"
ks=$(for n in $LENS; do printf '%s,' "$n"; done); ks=${ks%,}
CUDA_VISIBLE_DEVICES=0 timeout 120 $B/bench_cuda_attention --cases lp,sp --lp-tokens $ks \
  --sp-tokens $ks --block-tokens 256 --json $OUT/attn-kernels.jsonl 2>&1 | tail -8

# max_context covers the longest prompt; max_seqs 16 keeps the KV cache near run3's 22.5 GiB
max_len=0; for n in $LENS; do [ $n -gt $max_len ] && max_len=$n; done
ctx=$(( (max_len + 16 + 255) / 256 * 256 )); [ $ctx -lt 9000 ] && ctx=9000
CFG=$OUT/m1x4-ttft.cfg
cat > $CFG <<EOF
cluster = { name = "m1-x4-ttft"; model = "$C/m1"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7400"; backend = "cuda-gpu"; threads = 16; micro_batches = $MB;
  max_seqs = 16; max_context = $ctx; max_batch_tokens = 4096; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = (
  { name = "g1"; data_listen = "127.0.0.1:7411"; backend = "cuda-int4"; gpu = 1; threads = 4; },
  { name = "g2"; data_listen = "127.0.0.1:7412"; backend = "cuda-int4"; gpu = 2; threads = 4; },
  { name = "g3"; data_listen = "127.0.0.1:7413"; backend = "cuda-int4"; gpu = 3; threads = 4; }
);
EOF
$B/moerack-coordinator --config $CFG --log-level debug > $OUT/coord.log 2>&1 & PIDS="$!"
for w in g1 g2 g3; do
  $B/moerack-worker --config $CFG --name $w --log-level info > $OUT/$w.log 2>&1 & PIDS="$PIDS $!"
done
for i in $(seq 1 600); do
  $B/moerack status --config $CFG > $OUT/status-up.txt 2>&1 && break
  kill -0 ${PIDS%% *} 2>/dev/null || { echo "coordinator exited"; tail -5 $OUT/coord.log; break; }
  sleep 0.5
done
echo "== cluster up after $(( $(date +%s) - t0 )) s (micro_batches $MB, max_context $ctx)"
grep -h "memory plan" $OUT/coord.log | cut -c1-240
timeout 150 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 4 \
  --vocab 200064 > /dev/null
for n in $LENS; do
  mark=$(wc -l < $OUT/coord.log)
  echo "== TTFT, $n-token prompt (best of 2; limit ${TTFT_LIMIT} s)"
  ts=$(date +%s)
  timeout $TTFT_LIMIT $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 \
    --decode 1 --ttft $n --vocab 200064 | tail -1
  echo "   rc ${PIPESTATUS[0]} after $(( $(date +%s) - ts )) s; its prefill steps (coordinator):"
  tail -n +$((mark + 1)) $OUT/coord.log | grep "step:" | grep -v " 1 tokens of\| 16 tokens of" \
    | sed 's/.*step: /   /' | cut -c1-330
  $B/moerack status --config $CFG | sed -n 2,5p
done
kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null
grep -h "is down\|failed" $OUT/coord.log | head -5
echo "== done after $(( $(date +%s) - t0 )) s"
