#!/bin/bash
# Issue 7, the multi-GPU coordinator, run 2 on nvidia-h200-x2 (after run 1: run_mgpu.sh). Copied
# into the carry folder with bin/, lib/, golden/, m1e2/ and m1e4/ (MiniMax-M1's config with 2 or 4
# experts per layer); writes under $OUT.
#  1. smoke test of this build: tiny goldens on 2 GPUs, bit for bit against 1 GPU;
#  2. batch-1 decode again, with GPU 1 alone as a second 1-GPU baseline (run 1 compared GPU 0 with
#     GPUs 0+1: is the 1.6% gap the split or the other GPU?);
#  3. batch 16 decode on 1 and 2 GPUs;
#  4. a model one GPU cannot hold (80 layers x 4 experts: 151 GB of weights): refused on GPU 0
#     with the planner's message, run on GPUs 0,1.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
L=$OUT/mgpu2; mkdir -p $L
W=/tmp/mgpu-work; mkdir -p $W
budget=390
left() { echo $((budget - SECONDS)); }
step() { # name timeout command...: runs unless less than `timeout` seconds are left
  local name=$1 t=$2; shift 2
  if [ "$(left)" -lt "$t" ]; then echo "SKIPPED $name (time budget)" | tee $L/$name.txt; return; fi
  local t0=$SECONDS
  timeout $t "$@" > $L/$name.txt 2>&1; local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s" | tee -a $L/summary.txt
  grep -E "^(PASS|FAIL)" $L/$name.txt | tee -a $L/summary.txt | head -12
}
mon() { nvidia-smi --query-gpu=timestamp,index,memory.used,utilization.gpu --format=csv,noheader -lms 500 > $L/$1-smi.csv & MON=$!; }
bench() { # name timeout model gpus extra...
  local n=$1 t=$2 model=$3 g=$4; shift 4
  mon $n
  step $n $t $B/moerack bench forward --model synthetic:1:$C/$model --backend cuda-gpu --gpus $g "$@"
  kill $MON 2>/dev/null; wait $MON 2>/dev/null
  grep -v "^model\|^backend" $L/$n.txt | cut -c1-220
  awk -F', ' '{v = $3 + 0; if (v > m[$2]) m[$2] = v} END {for (g in m) print "  peak GPU " g ": " m[g] " MiB"}' $L/$n-smi.csv
}
nvidia-smi --query-gpu=index,name,memory.total,clocks.max.sm,clocks.sm --format=csv,noheader | tee $L/gpus.txt

$B/moerack model gen-tiny $W/tiny --preset tiny --seed 1 > /dev/null
G="$B/golden_check --moerack $B/moerack --backend cuda-gpu --golden $C/golden/tiny --model $W/tiny"
step golden_tiny_2gpu 40 $G --tol 2e-2 --near-ties --gpus 0,1
step bitwise_tiny_mb2_chunk100 40 $G --gpus 0,1 --same-as-gpus 0 --micro-batches 2 --chunk 100

D1="--prompt-len 2048 --chunk 2048 --decode 32"
bench e2_b1_gpu1 80 m1e2 1 $D1
bench e2_b1_gpus01 80 m1e2 0,1 $D1
bench e2_b1_gpu0 80 m1e2 0 $D1
D16="--prompt-len 256 --chunk 256 --decode 16 --batch 16"
bench e2_b16_gpu0 90 m1e2 0 $D16
bench e2_b16_gpus01 90 m1e2 0,1 $D16
step e4_gpu0_refused 40 $B/moerack run --model $C/m1e4 --synthetic-weights 1 --backend cuda-gpu --gpus 0 --ids 1,2,3 --greedy 2 --log-level info
grep -E "stage|error" $L/e4_gpu0_refused.txt | cut -c1-300
bench e4_b1_gpus01 90 m1e4 0,1 $D1
echo "== done in $SECONDS s"
cp $L/summary.txt $OUT/summary.txt 2>/dev/null
tar czf $OUT/mgpu2.tar.gz -C $OUT mgpu2 && rm -rf $L
