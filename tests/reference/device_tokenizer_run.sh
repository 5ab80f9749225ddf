#!/usr/bin/env bash
# One batched run on the GPU machine (which has python3 + tokenizers): the tokenizer goldens, then
# the speed of moerack and of HF tokenizers on the same text, same machine, and a full id
# comparison on that text. Everything comes back as $OUT/results.tar.
#   device_tokenizer_run.sh CARRY_DIR
# CARRY_DIR holds: moerack (static build), corpus.json, this script, tokenizer_goldens.py,
# bench_tokenizers.py and, xz-compressed, bench.txt, qwen3.json, deepseek_v3.json, llama3.json and
# minimax_merges.txt.
set -euo pipefail
D=$(cd "$1" && pwd)
W=/tmp/tokwork
rm -rf $W && mkdir -p $W/g && cd $W
for f in "$D"/*.xz; do
  python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' \
    "$f" "$(basename "${f%.xz}")"
done
{ nproc; grep -m1 "model name" /proc/cpuinfo; python3 --version; } | tee g/machine.log
"$D"/moerack tokenize --minimax-merges minimax_merges.txt --write-tokenizer-json minimax_moerack.json
python3 "$D"/tokenizer_goldens.py --corpus "$D"/corpus.json --out g \
  --json qwen3=qwen3.json --json deepseek_v3=deepseek_v3.json --json llama3=llama3.json \
  --minimax minimax=minimax_merges.txt --train-pair gpt2small=g/gpt2small \
  --same-as minimax_moerack=minimax_moerack.json,minimax 2>&1 | tee g/goldens.log
names="qwen3 deepseek_v3 llama3 minimax_moerack"
for n in $names; do
  "$D"/moerack tokenize --tokenizer $n.json --bench 5 < bench.txt | sed "s/^/moerack $n: /"
  "$D"/moerack tokenize --tokenizer $n.json --bench 3 --no-cache < bench.txt | sed "s/^/moerack $n no-cache: /"
  "$D"/moerack tokenize --tokenizer $n.json < bench.txt > $n.moerack.ids
done 2>&1 | tee g/bench_moerack.log
PYTHONUNBUFFERED=1 python3 "$D"/bench_tokenizers.py --text bench.txt --out . --reps 3 \
  $(for n in $names; do echo $n=$n.json; done) 2>&1 | tee g/bench_hf.log
tar cf "$OUT"/results.tar g
