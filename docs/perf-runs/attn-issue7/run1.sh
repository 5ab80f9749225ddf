#!/bin/bash
# Issue 7, device run 1: the attention stack at real dims on one H200 (must-show 1–4).
# Here: tests/gpu/device_pack.sh build .device-carry   (carry .device-carry with the call)
# GPU machine, from the repo root:  bash docs/perf-runs/attn-issue7/run1.sh
# Everything lands under $OUT; the summary tables (tests/bench/attn_tables.py) are printed last.
# Time caps add up to 525 s; expected about 5–6 minutes.
R=$PWD; B=$R/.device-carry/bin; S=$R/tests/bench
export LD_LIBRARY_PATH=$R/.device-carry/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
: "${OUT:=/tmp/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.current.sm,clocks.current.memory,power.limit --format=csv > $OUT/gpu.txt 2>&1
cat $OUT/gpu.txt
step() { # name cap command...: runs with a time cap, log in $OUT/name.log, prints rc and the time
  local name=$1 cap=$2; shift 2
  local t0=$(date +%s%N)
  timeout -k 10 "$cap" "$@" > "$OUT/$name.log" 2>&1; local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf "== %-12s rc=%-3s %4d.%01d s (cap %s s)\n" "$name" "$rc" $((ms / 1000)) $((ms % 1000 / 100)) "$cap" | tee -a $OUT/steps.txt
  return 0
}
# 1. correctness: every CUDA attention op (and the coord ops) against kernels/ref
step test_attn 100 $B/test_cuda_attention
grep -E "worst|FAIL|fail|passed|SKIP" $OUT/test_attn.log | tail -25
[ -x $B/test_cuda_coord_ops ] && { step test_coord 40 $B/test_cuda_coord_ops; grep -E "FAIL|fail|passed|SKIP" $OUT/test_coord.log | tail -8; }
# 2. speed at real dims: the PyTorch peers first, then ours (reads the peers' lines for the ratios)
step peer 85 env PYTHONUNBUFFERED=1 python3 $S/peer_attention.py --json $OUT/peer.jsonl
grep -vE '^\{' $OUT/peer.log | tail -15
step bench 85 $B/bench_cuda_attention --peer $OUT/peer.jsonl --json $OUT/bench.jsonl
sed -n '/^op /,$p' $OUT/bench.log
# 3. the 1M-token slice (7 lightning + 1 softmax layer), then decode steps through it (must-show 4)
step slice 215 $B/bench_attn_slice --budget-s 200 --json $OUT/slice.jsonl
grep -vE '^\{' $OUT/slice.log | tail -60
# tables for docs/performance.md (+ the experts' share from issue 9's run, for the decode formula)
E=$R/docs/perf-runs/cuda-issue9/run3/bench.csv
python3 $S/attn_tables.py --bench $OUT/bench.jsonl --peer $OUT/peer.jsonl --slice $OUT/slice.jsonl \
  --experts-csv $E > $OUT/tables.md 2>&1; echo "tables rc=$?"
cat $OUT/tables.md
cat $OUT/steps.txt
