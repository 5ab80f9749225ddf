#!/bin/bash
# Session 4, final run on nvidia-h200-x2: everything merged (GEMV projections + experts incl.
# int8, decode graphs, multi-GPU stages, device sampling) — tests, goldens 1 and 2 GPUs, graph
# bitwise check, expert bench, and the 80-layer full-width model (2 experts per layer) end to end.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/final; mkdir -p $O; W=/tmp/w; mkdir -p $W
budget=470; left() { echo $((budget - SECONDS)); }
step() { local name=$1 cap=$2; shift 2
  if [ "$(left)" -lt "$cap" ]; then echo "== $name SKIPPED (budget)" | tee -a $O/steps.txt; return; fi
  local t0=$SECONDS; timeout -k 5 "$cap" "$@" > "$O/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc $((SECONDS - t0)) s (cap $cap)" | tee -a $O/steps.txt; }
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
for p in tiny small; do $B/moerack model gen-tiny $W/$p --preset $p > /dev/null 2>&1; done
G="$B/golden_check --moerack $B/moerack"
step test_experts 120 $B/test_cuda_experts
grep -E "FAIL|fail|int8 .*worst" $O/test_experts.log | head -6; tail -1 $O/test_experts.log
step test_coord 60 $B/test_cuda_coord_ops --quick; tail -1 $O/test_coord.log
for p in tiny small; do
  skip=""; [ $p = small ] && skip="--skip len1"
  step golden_${p}_cuda 60 $G --golden $C/golden/$p --model $W/$p --backend cuda --tol 1e-3
  step golden_${p}_cuda-gpu 60 $G --golden $C/golden/$p --model $W/$p --backend cuda-gpu --tol 2e-2 --near-ties $skip
  step golden_${p}_2gpus 60 $G --golden $C/golden/$p --model $W/$p --backend cuda-gpu --tol 2e-2 --near-ties $skip --gpus 0,1
  step bitwise_${p}_2gpus_mb2 60 $G --golden $C/golden/$p --model $W/$p --backend cuda-gpu --gpus 0,1 --same-as-gpus 0 --micro-batches 2 --chunk 100
done
step golden_tiny_cuda-int8 60 $G --golden $C/golden/tiny --model $W/tiny --backend cuda-int8 --tol 2e-2 --near-ties
step golden_tiny_cuda-full 60 $G --golden $C/golden/tiny --model $W/tiny --backend cuda-full --tol 2e-2 --near-ties
grep -hE "^FAIL" $O/golden_*.log $O/bitwise_*.log | head
step graph_check 90 sh $C/graph_check.sh $B/moerack $B/sample_path_check $W/tiny $W/graph
tail -2 $O/graph_check.log
step spc_small 60 $B/sample_path_check --model $W/small --backend cuda-gpu --tol 1e-4
tail -1 $O/spc_small.log
step bench_experts 90 $B/bench_cuda_experts --formats bf16,int8,int4 --tokens 1,2,4,8,16,32 --csv $O/experts.csv
grep -E " (split|split-old|auto|wq) " $O/bench_experts.log | head -60
for cfg in "gpu0_b1 0 1" "gpu0_b1_nog 0 1 nog" "gpus01_b1 0,1 1" "gpu0_b16 0 16"; do
  set -- $cfg; env=""; [ "$4" = nog ] && env="MOERACK_CUDA_GRAPHS=0"
  step fwd_$1 90 env $env $B/moerack bench forward --model synthetic:1:$C/m1e2 --backend cuda-gpu --gpus $2 --batch $3 --prompt-len 2048 --chunk 2048 --decode 32
  echo "$1: $(grep -E '^(decode|prefill) ' $O/fwd_$1.log | tr '\n' ' ')"
done
cat $O/steps.txt | grep -v "rc=0" 
tar -C $OUT -czf $OUT/final.tgz final && rm -rf $O
