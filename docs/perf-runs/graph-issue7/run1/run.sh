#!/bin/bash
# Issue 7: decode segments as CUDA graphs — goldens, bitwise graphs-on vs off (single sequence and
# a batched scheduler run), and decode speed on/off (full-width 8-layer model).
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/graph1; mkdir -p $O
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
step() { local name=$1 cap=$2; shift 2; local t0=$(date +%s)
  timeout -k 5 "$cap" "$@" > "$O/$name.log" 2>&1; local rc=$?
  echo "== $name rc=$rc $(( $(date +%s) - t0 )) s (cap $cap)" | tee -a $O/steps.txt; }
for p in tiny small; do $B/moerack model gen-tiny /tmp/$p --preset $p > /dev/null 2>&1; done
for p in tiny small; do
  skip=""; [ $p = small ] && skip="--skip len1"
  step golden_${p} 90 $B/golden_check --moerack $B/moerack --golden $C/golden/$p --model /tmp/$p --backend cuda-gpu --tol 2e-2 --near-ties $skip
  grep -E "FAIL|PASS" $O/golden_${p}.log | head -6
done
for g in 1 0; do
  step run_tiny_g$g 60 env MOERACK_CUDA_GRAPHS=$g $B/moerack run --model /tmp/tiny --ids 5,17,300,2,99,41,7 --greedy 40 --backend cuda-gpu --dump-logits $O/tiny_g$g.f32 --log-level info
  step run_small_g$g 60 env MOERACK_CUDA_GRAPHS=$g $B/moerack run --model /tmp/small --ids 5,17,300,2,99,41,7,8,9,10,11,12,13,14,15,16,17 --greedy 300 --backend cuda-gpu --dump-logits $O/small_g$g.f32
  step spc_tiny_g$g 90 env MOERACK_CUDA_GRAPHS=$g $B/sample_path_check --model /tmp/tiny --backend cuda-gpu --tol 1e-4 --dump $O/spc_tiny_g$g.bin
  step spc_small_g$g 90 env MOERACK_CUDA_GRAPHS=$g $B/sample_path_check --model /tmp/small --backend cuda-gpu --tol 1e-4 --dump $O/spc_small_g$g.bin
done
tail -2 $O/run_tiny_g1.log; grep -ci "graph" $O/run_tiny_g1.log
for f in tiny small; do cmp $O/${f}_g1.f32 $O/${f}_g0.f32 && echo "BITWISE run $f: graphs = no graphs ($(stat -c %s $O/${f}_g1.f32) bytes)"; done
for f in tiny small; do cmp $O/spc_${f}_g1.bin $O/spc_${f}_g0.bin && echo "BITWISE scheduler $f: graphs = no graphs"; tail -1 $O/spc_${f}_g1.log; done
for b in 1 16 64; do for g in 1 0; do
  step fwd_b${b}_g$g 120 env MOERACK_CUDA_GRAPHS=$g $B/moerack bench forward --model synthetic:1:$C/m1s8 --backend cuda-gpu --prompt-len 512 --chunk 512 --decode 48 --batch $b
  echo "batch $b graphs $g: $(grep -E '^decode ' $O/fwd_b${b}_g$g.log)"
done; done
tar -C $OUT -czf $OUT/graph1.tgz graph1 && rm -rf $O
