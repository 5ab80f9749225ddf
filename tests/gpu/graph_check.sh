#!/bin/sh
# graph_check.sh MOERACK SAMPLE_PATH_CHECK MODEL_DIR WORK — decode segments as CUDA graphs
# (cuda-gpu) change no result: one sequence decoding 40 tokens and a scheduler batching ten
# sampled requests (rows padded to powers of two) give bit for bit the logits, tokens and logprobs
# they give with MOERACK_CUDA_GRAPHS=0, and the graphs were really captured and replayed (the
# backend's count at exit). Needs a GPU (the ctest probes first).
set -eu
bin=$1 spc=$2 model=$3 work=$4
mkdir -p "$work"
ids=5,17,300,2,99,41,7
MOERACK_CUDA_GRAPHS=0 "$bin" run --model "$model" --ids $ids --greedy 40 --backend cuda-gpu \
    --dump-logits "$work/run_g0.f32" > /dev/null
"$bin" run --model "$model" --ids $ids --greedy 40 --backend cuda-gpu \
    --dump-logits "$work/run_g1.f32" --log-level info > /dev/null 2> "$work/run_g1.log"
cmp "$work/run_g0.f32" "$work/run_g1.f32"
grep -E "decode segments: [1-9][0-9]* graphs captured, [1-9][0-9]* replays" "$work/run_g1.log"
MOERACK_CUDA_GRAPHS=0 "$spc" --model "$model" --backend cuda-gpu --tol 1e-4 \
    --dump "$work/spc_g0.bin" > /dev/null
"$spc" --model "$model" --backend cuda-gpu --tol 1e-4 --dump "$work/spc_g1.bin" > /dev/null
cmp "$work/spc_g0.bin" "$work/spc_g1.bin"
echo "graph_check: graphs on = graphs off, bit for bit"
