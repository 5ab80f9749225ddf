#!/usr/bin/python3
"""Compute golden logits/greedy continuations with the float64 reference (minimax_ref.py).

  /usr/bin/python3 tests/reference/make_goldens.py --model DIR --out OUTDIR --preset NAME --seed N

Cases: prompts of length 1, 255, 256, 257, 600 (case index c = 0..4 in that order), 8 greedy steps each.
Prompt ids (see minimax_ref.prompt_ids):
  x = (seed*1000003 + c*7919 + 17) mod 2^32
  for each position: x = (1664525*x + 1013904223) mod 2^32; id = x % vocab_size

Writes OUTDIR/golden.json and OUTDIR/<case>.f32 (rows x vocab float32 little-endian, row-major; row 0 = logits
at the last prompt position, row i = logits after appending greedy token g_i).
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minimax_ref as R  # noqa: E402

STEPS = 8


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def checkpoint_hashes(d):
    out = {}
    for fn in sorted(os.listdir(d)):
        p = os.path.join(d, fn)
        if os.path.isfile(p):
            out[fn] = sha256_file(p)
    return out


def make_goldens(model_dir, out_dir, preset, seed, lengths=None, steps=STEPS, max_vocab=4096, verbose=True):
    lengths = R.GOLDEN_LENGTHS if lengths is None else lengths
    m = R.load_checkpoint(model_dir)
    if m.V > max_vocab:
        raise SystemExit(f"vocab_size {m.V} > {max_vocab}: goldens would be large; pass --max-vocab to force")
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    for c, L in enumerate(lengths):
        t0 = time.time()
        prompt = R.prompt_ids(seed, c, L, m.V)
        gen, rows = R.greedy(m, prompt, steps)
        name = f"len{L}"
        fn = f"{name}.f32"
        arr = rows.numpy().astype("<f4")
        assert arr.shape == (steps + 1, m.V)
        with open(os.path.join(out_dir, fn), "wb") as f:
            f.write(arr.tobytes())
        # greedy margin (top1 - top2 of each row) tells how robust the greedy golden is to engine rounding
        srt = np.sort(rows.numpy(), axis=1)
        margin = float(f"{float((srt[:, -1] - srt[:, -2]).min()):.6g}")  # rounded: golden.json stays byte-stable
        cases.append({"name": name, "prompt": prompt, "greedy": gen, "logits_file": fn, "rows": steps + 1,
                      "min_top2_margin": margin})
        if verbose:
            print(f"{name}: greedy {gen}  min top1-top2 margin {margin:.3g}  ({time.time() - t0:.1f}s)")
    golden = {
        "format": 1,
        "preset": preset,
        "seed": seed,
        "generator": "tests/reference/minimax_ref.py (float64)",
        "vocab_size": m.V,
        "checkpoint_sha256": checkpoint_hashes(model_dir),
        "cases": cases,
    }
    with open(os.path.join(out_dir, "golden.json"), "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    return golden


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--preset", required=True, help="preset name recorded in golden.json")
    ap.add_argument("--seed", type=int, required=True, help="prompt seed")
    ap.add_argument("--steps", type=int, default=STEPS, help="greedy steps per case (default 8)")
    ap.add_argument("--max-vocab", type=int, default=4096, help="refuse larger vocabularies (file size guard)")
    a = ap.parse_args(argv)
    make_goldens(a.model, a.out, a.preset, a.seed, steps=a.steps, max_vocab=a.max_vocab)
    print(f"wrote {a.out}/golden.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
