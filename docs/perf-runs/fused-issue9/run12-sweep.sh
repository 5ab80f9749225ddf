#!/bin/bash
# Issue 9, session 7, run 12: the sweep again for int4 at 1–2 tokens with units per warp up to 16 (waves × warps per block × units
# per warp), bf16 activations (bench_cuda_experts --wq-sweep).
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/sweep12; mkdir -p $O
timeout 400 $B/bench_cuda_experts --formats int4 --tokens ${TOKENS:-1,2} --wq-sweep > $O/sweep.log 2>&1; echo "sweep rc=$?"
for n in 1 2; do
  echo "int4 $n rule (w4 ks8 mu6): $(awk -v n=$n '$3==n && $5==4 && $7==8 && $9==6 {print $10, $12}' $O/sweep.log)"
  awk -v n=$n '$1=="sweep" && $3==n' $O/sweep.log | sort -k10 -g | head -5
done
