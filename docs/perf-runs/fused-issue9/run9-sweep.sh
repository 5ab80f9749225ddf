#!/bin/bash
# Issue 9, session 7, run 9: the wq kernel's launch split swept (waves × warps per block × units
# per warp) at 1–32 tokens, int8 and int4, bf16 activations (bench_cuda_experts --wq-sweep).
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/sweep9; mkdir -p $O
timeout 400 $B/bench_cuda_experts --formats int8,int4 --tokens ${TOKENS:-1,2,4,8,16,32} --wq-sweep > $O/sweep.log 2>&1; echo "sweep rc=$?"
for f in int8 int4; do for n in 1 2 4 8 16 32; do
  echo "$f $n default: $(grep -E "^sweep $f +$n waves 2 ks 4 min_units 3 " $O/sweep.log | awk '{print $11, $13}')  best: $(grep -E "^sweep $f +$n " $O/sweep.log | sort -k11 -g | head -3 | awk '{printf "[w%s ks%s mu%s %s %s] ", $5, $7, $9, $11, $13}')"
done; done
