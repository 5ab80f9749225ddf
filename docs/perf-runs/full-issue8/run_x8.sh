#!/bin/bash
# Issue 8 on nvidia-h200-x8: the whole MiniMax-M1 (the release's config.json: 80 layers, 2560
# experts, full widths) with synthetic weights generated where they are kept: the coordinator on
# GPU 0 (backend cuda-gpu: attention stack, routers, LM head, states, KV cache on the GPU) and
# seven bf16 workers on GPUs 1-7 (backend cuda: 365-366 experts each, 124 GB, generated on their
# GPU), TCP on loopback. Phase 1 without micro-batch overlap (micro_batches = 1), phase 2 with it
# (2): decode at batch 1/16/64/256 each; time to first token at 1K/8K in both and 32K in phase 2
# (last, with the time left). The coordinator logs each step's phases (--log-level debug).
# Copied into the carry folder with the binaries and m1/config.json; writes under $OUT.
#   [GPUS=8] [WIRE=f32|bf16] [MBS="1 2"] [TAG=] [R=dir] bash .device-carry/run_x8.sh [WORKER_BACKEND]   (default cuda)
# MBS: the micro_batches settings to run, in order (the 32K prompt runs in the last); WIRE:
# cluster.wire_dtype; TAG: suffix of the output files (several settings in one call); R: where
# they go (default $OUT); SKIP32K=1 leaves out the 32K prompt, SKIPTTFT=1 every prompt.
C=$(cd "$(dirname "$0")" && pwd); B=$C/bin
BACKEND=${1:-cuda}
WIRE=${WIRE:-f32}
MBS=${MBS:-1 2}
GPUS=${GPUS:-8} # the coordinator on GPU 0, a worker on each of GPUs 1 .. GPUS-1
WS=$(seq 1 $((GPUS - 1)))
R=${R:-$OUT}; mkdir -p $R # where configs, logs and status files go
export LD_LIBRARY_PATH=$C/lib:/usr/local/cuda/lib64:$LD_LIBRARY_PATH
T_END=$(( $(date +%s) + ${RUN_SECONDS:-570} ))
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
nvidia-smi topo -m | head -10

start_cluster() { # $1 = micro_batches
    CFG=$R/m1x8-mb$1$TAG.cfg
    {
        echo "cluster = { name = \"m1-x8\"; model = \"$C/m1\"; transport = \"tcp\"; synthetic_weights = 1; wire_dtype = \"$WIRE\"; };"
        echo "coordinator = { listen = \"127.0.0.1:7400\"; backend = \"cuda-gpu\"; threads = 16;"
        echo "  micro_batches = $1; max_seqs = 256; max_context = 33000; max_batch_tokens = 4096;"
        echo "  kv_block_tokens = 256; kv_blocks = 1024; expert_timeout_ms = 600000;"
        echo "  worker_timeout_ms = 600000; heartbeat_interval_ms = 1000; };"
        echo "workers = ("
        for g in $WS; do
            sep=$([ $g = $((GPUS - 1)) ] && echo "" || echo ",")
            echo "  { name = \"g$g\"; data_listen = \"127.0.0.1:74$((10 + g))\"; backend = \"$BACKEND\"; gpu = $g; threads = 4; }$sep"
        done
        echo ");"
    } > $CFG
    t0=$(date +%s)
    $B/moerack-coordinator --config $CFG --log-level debug > $R/coord-mb$1$TAG.log 2>&1 & PIDS="$!"
    for g in $WS; do
        $B/moerack-worker --config $CFG --name g$g --log-level info > $R/g$g-mb$1$TAG.log 2>&1 &
        PIDS="$PIDS $!"
    done
    for i in $(seq 1 600); do
        $B/moerack status --config $CFG > $R/status-up-mb$1$TAG.txt 2>&1 && break
        kill -0 ${PIDS%% *} 2>/dev/null || { echo "coordinator exited"; tail -5 $R/coord-mb$1$TAG.log; break; }
        sleep 0.5
    done
    echo "== micro_batches $1, wire $WIRE, workers $BACKEND: cluster up after $(( $(date +%s) - t0 )) s"
    cat $R/status-up-mb$1$TAG.txt
    grep -h "memory plan\|experts on the GPU\|lowered" $R/coord-mb$1$TAG.log $R/g1-mb$1$TAG.log | cut -c1-260
    echo "== warm-up"
    timeout 90 $B/moerack bench load --config $CFG --concurrency 1 --prompt-len 16 --decode 4 \
        --vocab 200064 | tail -1
}

stop_cluster() {
    $B/moerack status --config $CFG --json > $R/status-end-mb$1$TAG.json 2>&1
    kill $PIDS 2>/dev/null; wait $PIDS 2>/dev/null
}

decode_and_ttft() { # $1 = micro_batches
    echo "== decode, micro_batches = $1 (prompt 16 ids, 16 new tokens)"
    timeout 150 $B/moerack bench load --config $CFG --concurrency 1,16,64,256 --prompt-len 16 \
        --decode 16 --vocab 200064
    $B/moerack status --config $CFG > $R/status-decode-mb$1$TAG.txt 2>&1; head -10 $R/status-decode-mb$1$TAG.txt
    [ -n "$SKIPTTFT" ] && return
    echo "== time to first token, micro_batches = $1 (prompt, 1 new token)"
    timeout 120 $B/moerack bench load --config $CFG --concurrency 0 --ttft 1024,8192 --ttft-runs 1 \
        --vocab 200064
}

LAST=${MBS##* }
for mb in $MBS; do
    start_cluster $mb; decode_and_ttft $mb
    [ $mb = $LAST ] || stop_cluster $mb
done
left=$(( T_END - $(date +%s) - 15 ))
echo "== time to first token, 32K prompt, micro_batches = $LAST, wire $WIRE, workers $BACKEND ($left s left)"
[ -z "$SKIP32K" ] && [ $left -gt 20 ] && timeout $left $B/moerack bench load --config $CFG --concurrency 0 --ttft 32768 \
    --ttft-runs 1 --vocab 200064
stop_cluster $LAST
nvidia-smi --query-gpu=index,memory.used --format=csv,noheader
echo "== step profiles (coordinator, debug): see coord-mb*.log"
