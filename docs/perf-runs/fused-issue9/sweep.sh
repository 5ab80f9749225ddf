#!/bin/bash
# Issue 9, session 7: the wq kernel's launch split swept (waves × warps per block × units per warp,
# bf16 activations; bench_cuda_experts --wq-sweep) — sweep.sh TAG — then the five fastest splits of
# each format and size.
#   run 9  (479a9a4, units 2–6; FORMATS=int8,int4 TOKENS=1,2,4,8,16,32): run9-sweep/
#   run 12 (78c226c, units 2–16; FORMATS=int4 TOKENS=1,2): run12-sweep/
# Carry as run-check.sh.
TAG=${1:?usage: sweep.sh TAG}
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/$TAG; mkdir -p $O
F=${FORMATS:-int8,int4}; T=${TOKENS:-1,2,4,8,16,32}
timeout 400 $B/bench_cuda_experts --formats $F --tokens $T --wq-sweep > $O/sweep.log 2>&1; echo "sweep rc=$?"
for f in ${F//,/ }; do for n in ${T//,/ }; do
  echo "$f $n: the five fastest (waves, warps, units, ms, %HBM)"
  awk -v f=$f -v n=$n '$1=="sweep" && $2==f && $3==n {print $5, $7, $9, $10, $12}' $O/sweep.log | sort -k4 -g | head -5
done; done
