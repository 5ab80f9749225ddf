#!/usr/bin/env python3
"""Accuracy cost of the GPU expert formats on the tiny presets.

For every golden case (tests/data/golden/PRESET) runs `moerack run --backend B` for B in
cpu, cuda (bf16), cuda-int8, cuda-int4 and reports, per backend and case:
  - logits error on the prompt rows (teacher-forced, identical inputs for every backend):
    max over rows of ||l - l_bf16|| / ||l_bf16|| against the cuda bf16 run, and against the
    float64 reference goldens;
  - argmax agreement with the bf16 run over the prompt rows;
  - greedy agreement: generated ids equal to the bf16 run's (and to the goldens'), of 8.

    python3 tests/bench/quant_accuracy.py --moerack build/cli/moerack \
        --golden tests/data/golden/tiny --model /tmp/tiny [--golden ... --model ...]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

BACKENDS = ["cpu", "cuda", "cuda-fast", "cuda-int8", "cuda-int4"]


def run(moerack, model, backend, prompt, greedy, dump):
    cmd = [moerack, "run", "--model", model, "--backend", backend, "--greedy", str(greedy),
           "--dump-logits", dump, "--ids", ",".join(str(t) for t in prompt)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    return [int(t) for t in out.stdout.strip().split(",") if t]


def rel(a, b):
    num = np.linalg.norm(a.astype(np.float64) - b, axis=1)
    den = np.linalg.norm(b.astype(np.float64), axis=1)
    return float(np.max(num / np.where(den > 0, den, 1.0)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moerack", required=True)
    ap.add_argument("--golden", action="append", required=True)
    ap.add_argument("--model", action="append", required=True)
    args = ap.parse_args()
    print(f"{'preset':7} {'case':7} {'backend':10} {'err vs bf16':>11} {'err vs gold':>11} "
          f"{'argmax=bf16':>11} {'greedy=bf16':>11} {'greedy=gold':>11}")
    tmp = tempfile.mkdtemp()
    for gdir, model in zip(args.golden, args.model):
        g = json.load(open(os.path.join(gdir, "golden.json")))
        vocab = g["vocab_size"]
        for case in g["cases"]:
            prompt, gold_ids = case["prompt"], case["greedy"]
            gold = np.fromfile(os.path.join(gdir, case["logits_file"]), dtype=np.float32)
            gold = gold.reshape(-1, vocab)
            n_p = len(prompt)
            res = {}
            for b in BACKENDS:
                dump = os.path.join(tmp, f"{b}.f32")
                ids = run(args.moerack, model, b, prompt, len(gold_ids), dump)
                res[b] = (ids, np.fromfile(dump, dtype=np.float32).reshape(-1, vocab))
            ref_ids, ref = res["cuda"]
            for b in BACKENDS:
                ids, lg = res[b]
                e_bf = rel(lg[:n_p], ref[:n_p])
                e_gold = rel(lg[:n_p], gold[:n_p])
                am = float(np.mean(np.argmax(lg[:n_p], 1) == np.argmax(ref[:n_p], 1)))
                gb = sum(int(a == c) for a, c in zip(ids, ref_ids))
                gg = sum(int(a == c) for a, c in zip(ids, gold_ids))
                print(f"{g['preset']:7} {case['name']:7} {b:10} {e_bf:11.3e} {e_gold:11.3e} "
                      f"{am:11.4f} {gb:>8}/{len(ref_ids)} {gg:>8}/{len(gold_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
