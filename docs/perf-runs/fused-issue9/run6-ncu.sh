#!/bin/bash
# Issue 9, session 7, run 6: ncu of the run-5 one-kernel path against the wq kernels at int8 32
# tokens and int4 1 token: DRAM bytes and throughput, L2 traffic, stall reasons.
C=$(pwd)/.device-carry; R=/tmp/pk; mkdir -p $R; tar -C $R -xJf $C/pack.txz; B=$R/bin
export LD_LIBRARY_PATH=$R/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/ncu6; mkdir -p $O
M="dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum,lts__t_sectors_srcunit_tex_op_read.sum,gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__average_warp_latency_issue_stalled_long_scoreboard.ratio,smsp__average_warp_latency_issue_stalled_barrier.ratio,smsp__average_warp_latency_issue_stalled_short_scoreboard.ratio,smsp__average_warp_latency_issue_stalled_math_pipe_throttle.ratio,smsp__average_warp_latency_issue_stalled_wait.ratio,smsp__average_warp_latency_issue_stalled_sleeping.ratio,smsp__average_warp_latency_issue_stalled_mio_throttle.ratio,smsp__average_warp_latency_issue_stalled_lg_throttle.ratio,smsp__average_warp_latency_issue_stalled_not_selected.ratio,smsp__average_warp_latency_issue_stalled_selected.ratio,smsp__average_warp_latency_issue_stalled_dispatch_stall.ratio,smsp__average_warp_latency_issue_stalled_tex_throttle.ratio,smsp__average_warp_latency_issue_stalled_drain.ratio,smsp__issue_active.avg.pct_of_peak_sustained_active,sm__cycles_elapsed.avg.per_second"
for cfg in "int8 32" "int4 1" "int4 8"; do
  set -- $cfg
  timeout 120 ncu --clock-control none --metrics $M -k regex:"wqd_kernel|wq_kernel" -c 3 $B/bench_cuda_experts --formats $1 --tokens $2 > $O/m_$1_$2.txt 2>&1; echo "ncu $1 $2 rc=$?"
done
for f in $O/m_*.txt; do echo "== $f"; grep -E "wq_kernel|wqd_kernel|dram__bytes_read|dram__throughput|lts__t_bytes|duration|warps_active|long_scoreboard|barrier|short_score|math_pipe|stalled_wait|sleeping|mio_thr|lg_thr|not_selected|issue_active|per_second" $f | sed 's/  */ /g' | cut -c1-110; done
