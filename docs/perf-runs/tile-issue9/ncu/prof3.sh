#!/bin/bash
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
O=$OUT/prof3; mkdir -p $O
timeout 250 ncu --clock-control none -k regex:wqg_kernel -c 1 --set full --page raw $B/bench_cuda_experts --formats int8 --tokens 2048 > $O/ncu_raw.txt 2>&1; echo "ncu rc=$?"
grep -E "pcsamp_warps_issue_stalled_[a-z_]+ |sm__pipe_tensor_op_hgmma_cycles_active.avg.pct|sm__pipe_tensor_cycles_active.avg.pct|smsp__issue_active.avg.pct|gpu__time_duration.sum|lts__t_sectors_srcunit_tex_op_read.sum.per_second|dram__bytes.sum.per_second|l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum|sm__inst_executed_pipe_alu.sum.pct|sm__throughput.avg.pct|lts__throughput.avg.pct" $O/ncu_raw.txt | grep -v not_issued | awk "{print \$1, \$2, \$3}"
tar -C $OUT -czf $OUT/prof3.tgz prof3
