#!/bin/sh
# padding_check.sh SAMPLE_PATH_CHECK MODEL_DIR WORK — decode steps as segments pad the batch's rows
# to a power of two (the CUDA graphs' keys); rows of no sequence must change nothing. Ten batched
# requests on cpu-resident (which brackets segments like cuda-gpu, without graphs): tokens and
# logprobs bit for bit with and without segments.
set -eu
spc=$1 model=$2 work=$3
mkdir -p "$work"
"$spc" --model "$model" --backend cpu-resident --dump "$work/padded.bin" > /dev/null
"$spc" --model "$model" --backend cpu-resident --no-segments --dump "$work/plain.bin" > /dev/null
cmp "$work/padded.bin" "$work/plain.bin"
echo "padding_check: padded segments = no segments, bit for bit"
