#!/usr/bin/env bash
# The second batched run on the GPU machine: HF goldens for the synthetic tokenizers
# (make_synthetic_tokenizers.py), and the speed of moerack and of HF tokenizers encoding the
# benchmark text line by line as a batch of documents, one thread each, same machine, same run.
# Everything comes back as $OUT/results2.tar.
#   device_tokenizer_bench.sh CARRY_DIR
# CARRY_DIR: as for device_tokenizer_run.sh, plus synthetic/ and synthetic_corpus.json.
set -euo pipefail
D=$(cd "$1" && pwd)
W=/tmp/tokwork2
rm -rf $W && mkdir -p $W/g && cd $W
for f in "$D"/*.xz; do
  python3 -c 'import lzma,sys; open(sys.argv[2],"wb").write(lzma.open(sys.argv[1]).read())' \
    "$f" "$(basename "${f%.xz}")"
done
{ nproc; grep -m1 "model name" /proc/cpuinfo; python3 --version; } | tee g/machine.log
python3 "$D"/tokenizer_goldens.py --corpus "$D"/synthetic_corpus.json --out g/synthetic \
  $(for f in "$D"/synthetic/*.json; do n=$(basename "$f" .json); echo "--json $n=$f"; done) \
  2>&1 | tee g/synthetic.log
"$D"/moerack tokenize --minimax-merges minimax_merges.txt --write-tokenizer-json minimax_moerack.json
names="qwen3 deepseek_v3 llama3 minimax_moerack"
for n in $names; do
  "$D"/moerack tokenize --tokenizer $n.json --bench 5 --lines < bench.txt | sed "s/^/moerack $n: /"
  "$D"/moerack tokenize --tokenizer $n.json --bench 3 --lines --no-cache < bench.txt | sed "s/^/moerack $n no-cache: /"
  "$D"/moerack tokenize --tokenizer $n.json --bench 5 < bench.txt | sed "s/^/moerack $n whole: /"
done 2>&1 | tee g/bench_moerack.log
args=$(for n in $names; do echo $n=$n.json; done)
RAYON_NUM_THREADS=1 PYTHONUNBUFFERED=1 python3 "$D"/bench_tokenizers.py --text bench.txt --out . \
  --reps 2 --lines-only $args 2>&1 | tee g/bench_hf_1thread.log
PYTHONUNBUFFERED=1 python3 "$D"/bench_tokenizers.py --text bench.txt --out . --reps 2 \
  --lines-only $args 2>&1 | tee g/bench_hf_allthreads.log
tar cf "$OUT"/results2.tar g
