#!/bin/bash
# Issue 9, session 7, run 3: ncu of the one-kernel path (wqd_kernel) against the wq kernel pair at
# int4 1 and 8 tokens, int8 1 token: occupancy, issue, stall reasons, memory throughput.
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/ncu; mkdir -p $O
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis"
for cfg in "int4 8" "int4 1" "int8 1"; do
  set -- $cfg
  timeout 150 ncu --clock-control none $S -k regex:wqd_kernel -c 1 $B/bench_cuda_experts --formats $1 --tokens $2 > $O/wqd_$1_$2.txt 2>&1; echo "ncu wqd $1 $2 rc=$?"
  timeout 150 ncu --clock-control none $S -k regex:wq_kernel -c 2 $B/bench_cuda_experts --formats $1 --tokens $2 > $O/wq_$1_$2.txt 2>&1; echo "ncu wq $1 $2 rc=$?"
done
cuobjdump --dump-sass $B/bench_cuda_experts 2>/dev/null | awk '/Function : .*wqd_kernel/{p=1} p&&/Function : /&&!/wqd_kernel/{p=0} p' > $O/wqd.sass; wc -l $O/wqd.sass
grep -E "Duration|Achieved Occupancy|Theoretical Occupancy|Issue Slots Busy|Memory Throughput|DRAM Throughput|L1/TEX Hit|L2 Hit|Registers Per|No Eligible|Warp Cycles Per Issued|Block Limit" $O/*.txt | head -80
tar -C $OUT -czf $OUT/ncu.tgz ncu
