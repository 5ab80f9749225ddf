#!/bin/bash
# Issue 8, session 6, on nvidia-h200-x4: does a worker's next request sitting whole in the kernel's
# socket buffers (while the worker computes the current one) shorten prefill? The TCP autotuning
# ceilings raised to 128 MiB (net.ipv4.tcp_rmem / tcp_wmem), then run 9's setting again (cuda-int4,
# f32 wire, micro_batches 2), TTFT 1K/8K.
C=$(cd "$(dirname "$0")" && pwd); R=/tmp/x4; mkdir -p $R
sysctl net.ipv4.tcp_rmem net.ipv4.tcp_wmem
sysctl -w net.ipv4.tcp_rmem="4096 131072 134217728" net.ipv4.tcp_wmem="4096 16384 134217728" || echo "sysctl refused"
sysctl net.ipv4.tcp_rmem net.ipv4.tcp_wmem
GPUS=4 MBS=2 TAG=-int4-sockbuf R=$R SKIP32K=1 bash $C/run_x8.sh cuda-int4
cp $R/coord-*.log $OUT/; tar -C $R -czf $OUT/rest.tgz .
