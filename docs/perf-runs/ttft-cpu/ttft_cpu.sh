#!/usr/bin/env bash
# Time to first token through a local CPU cluster (coordinator + 2 workers, TCP on loopback,
# micro_batches 2) on a synthetic model built to make expert batches large: hidden 2048 (8 KB per
# token per message), 2 layers (lightning + softmax; LAYERS=lin: two lightning layers, so nothing
# is quadratic), 4 experts of width 64, vocab 512. The coordinator logs each step's time by phase
# (--log-level debug, coordinator/step_prof.h); they are printed after the TTFT table.
#   docs/perf-runs/ttft-cpu/ttft_cpu.sh [BUILD_DIR] [LENS] [MAX_BATCH_TOKENS]
#   e.g. ttft_cpu.sh build 1024,2048,4096,8192,16384 4096
# Before the dispatcher fix (branch ttft) the first prompt of 8192 tokens hangs (the bench is
# killed after LIMIT seconds, default 120).
set -u
cd "$(dirname "$0")/../../.."
B=$(cd "${1:-build}" && pwd); LENS=${2:-1024,2048,4096,8192,16384}; MBT=${3:-4096}
W=$B/ttft-cpu; mkdir -p $W/model
if [[ ${LAYERS:-} == lin ]]; then
  sed 's/"attn_type_list": \[0, 1\]/"attn_type_list": [0, 0]/' docs/perf-runs/ttft-cpu/wide-config.json
else
  cat docs/perf-runs/ttft-cpu/wide-config.json
fi > $W/model/config.json
cat > $W/cluster.cfg <<CFG
cluster = { name = "ttft-cpu"; model = "model"; transport = "tcp"; synthetic_weights = 1; };
coordinator = { listen = "127.0.0.1:7500"; backend = "cpu"; threads = 1; micro_batches = 2;
  max_seqs = 4; max_context = 20000; max_batch_tokens = $MBT; kv_block_tokens = 256;
  expert_timeout_ms = 600000; worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };
workers = (
  { name = "w0"; data_listen = "127.0.0.1:7510"; threads = 1; },
  { name = "w1"; data_listen = "127.0.0.1:7511"; threads = 1; }
);
CFG
$B/coordinator/moerack-coordinator --config $W/cluster.cfg --log-level debug >$W/coord.log 2>&1 &
pids=($!)
for w in w0 w1; do
  $B/worker/moerack-worker --config $W/cluster.cfg --name $w >$W/$w.log 2>&1 & pids+=($!)
done
for i in $(seq 1 300); do $B/cli/moerack status --config $W/cluster.cfg >/dev/null 2>&1 && break; sleep 0.2; done
timeout ${LIMIT:-120} $B/cli/moerack bench load --config $W/cluster.cfg --concurrency 1 \
  --prompt-len 16 --decode 2 --ttft "$LENS" --vocab 512
echo "bench exit $? (124: killed after ${LIMIT:-120} s)"
for p in "${pids[@]}"; do kill $p 2>/dev/null; done
for p in "${pids[@]}"; do wait $p 2>/dev/null; done
grep "step:" $W/coord.log | grep -v " 1 tokens of\| 16 tokens of" | sed 's/.*step: //' | cut -c1-300
