#!/bin/bash
# Issue 7, the multi-GPU coordinator, on nvidia-h200-x2: the model's layers split over 2 GPUs
# (stages) against the same model on 1 GPU. Copied into the carry folder (with bin/, lib/,
# golden/ from tests/gpu/device_pack.sh and m1e2/config.json); writes under $OUT.
#  1. goldens on cuda-gpu with 2 stages (tolerance as the 1-stage ctest), and bit for bit against
#     1 stage (whole prompts; micro-batches 2 with chunked prefill);
#  2. `moerack bench forward`: full MiniMax-M1 widths, 80 layers (70 lightning + 10 softmax), 2
#     experts per layer (top-2: every decode token reads 2 experts per layer, as the real model),
#     synthetic weights, on GPU 0 and on GPUs 0,1; memory per GPU sampled by nvidia-smi.
# Each step has its own timeout and the script skips steps once its time budget is spent.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
L=$OUT/mgpu; mkdir -p $L
W=/tmp/mgpu-work; mkdir -p $W
budget=400
left() { echo $((budget - SECONDS)); }
step() { # name timeout command...: runs unless less than `timeout` seconds are left
  local name=$1 t=$2; shift 2
  if [ "$(left)" -lt "$t" ]; then echo "SKIPPED $name (time budget)" | tee $L/$name.txt; return; fi
  local t0=$SECONDS
  timeout $t "$@" > $L/$name.txt 2>&1; local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s" | tee -a $L/summary.txt
  grep -E "^(PASS|FAIL)" $L/$name.txt | tee -a $L/summary.txt | head -12
}
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader | tee $L/gpus.txt
nvidia-smi topo -m > $L/topo.txt 2>&1; head -4 $L/topo.txt
nproc; free -g | head -2

for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p --seed 1 > /dev/null; done
G="$B/golden_check --moerack $B/moerack --backend cuda-gpu"
step golden_tiny_2gpu 60 $G --golden $C/golden/tiny --model $W/tiny --tol 2e-2 --near-ties --gpus 0,1
step bitwise_tiny 60 $G --golden $C/golden/tiny --model $W/tiny --gpus 0,1 --same-as-gpus 0

# the benchmark: 1 GPU, then 2
mon() { nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu --format=csv,noheader -lms 500 > $L/$1-smi.csv & MON=$!; }
for g in 0 0,1; do
  n=bench_gpus_${g/,/_}
  mon $n
  step $n 150 $B/moerack bench forward --model synthetic:1:$C/m1e2 --backend cuda-gpu --gpus $g \
    --prompt-len 2048 --chunk 2048 --decode 32
  kill $MON 2>/dev/null; wait $MON 2>/dev/null
  cat $L/$n.txt | cut -c1-200
  echo "peak memory used per GPU:"
  awk -F', ' '{v = $3 + 0; if (v > m[$2]) m[$2] = v} END {for (g in m) print "  GPU " g ": " m[g] " MiB"}' $L/$n-smi.csv
done

step golden_small_2gpu 60 $G --golden $C/golden/small --model $W/small --tol 2e-2 --near-ties --gpus 0,1 --skip len1
step bitwise_small 60 $G --golden $C/golden/small --model $W/small --gpus 0,1 --same-as-gpus 0
step bitwise_tiny_mb2_chunk100 60 $G --golden $C/golden/tiny --model $W/tiny --gpus 0,1 --same-as-gpus 0 --micro-batches 2 --chunk 100
step bitwise_small_mb2_chunk100 60 $G --golden $C/golden/small --model $W/small --gpus 0,1 --same-as-gpus 0 --micro-batches 2 --chunk 100
echo "== done in $SECONDS s"
cp $L/summary.txt $OUT/summary.txt 2>/dev/null
tar czf $OUT/mgpu.tar.gz -C $OUT mgpu && rm -rf $L
