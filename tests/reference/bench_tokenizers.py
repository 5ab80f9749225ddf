#!/usr/bin/env python3
"""The Python `tokenizers` side of the encoding-speed comparison (docs/performance.md).

Encodes the benchmark text (tests/reference/make_bench_text.py) with each tokenizer REPS times as
one string, encode(text, add_special_tokens=False) — single-threaded in HF, as moerack's encode
is — and reports the best time as MB/s and tokens/s; also encode_batch over the text's lines (HF
spreads a batch over all cores) for reference. Writes the ids of the single-string encoding as one
comma-separated line to OUT_DIR/<name>.ids; if OUT_DIR/<name>.moerack.ids exists (the output of
`moerack tokenize` on the same text) it is compared id by id and the first difference is shown.

  python3 bench_tokenizers.py --text bench.txt --out DIR --reps 3 NAME=tokenizer.json ...
"""
import argparse
import os
import time

import tokenizers
from tokenizers import Tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--text", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--lines-only", action="store_true",
                    help="only encode_batch over the lines (run with RAYON_NUM_THREADS=1 for one "
                         "thread), REPS times")
    ap.add_argument("tokenizers", nargs="+")
    a = ap.parse_args()
    data = open(a.text, "rb").read()
    text = data.decode("utf-8")
    parts = text.split("\n")  # each line with its "\n", as `moerack tokenize --bench --lines`
    lines = [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    print(f"tokenizers {tokenizers.__version__}, text {len(data)} bytes, {os.cpu_count()} cpus, "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS')}")
    for spec in a.tokenizers:
        name, path = spec.split("=", 1)
        t0 = time.perf_counter()
        tok = Tokenizer.from_file(path)
        load = time.perf_counter() - t0
        if a.lines_only:
            best = 1e30
            for _ in range(a.reps):
                t0 = time.perf_counter()
                batch = tok.encode_batch(lines, add_special_tokens=False)
                best = min(best, time.perf_counter() - t0)
            nb = sum(len(e.ids) for e in batch)
            print(f"hf {name}: encode_batch {len(lines)} lines: best {best:.3f} s "
                  f"{len(data) / best / 1e6:.2f} MB/s {nb / best:.0f} tokens/s ({nb} tokens)")
            continue
        best, ids = 1e30, None
        for _ in range(a.reps):
            t0 = time.perf_counter()
            enc = tok.encode(text, add_special_tokens=False)
            dt = time.perf_counter() - t0
            if dt < best:
                best, ids = dt, enc.ids
        t0 = time.perf_counter()
        batch = tok.encode_batch(lines, add_special_tokens=False)
        bt = time.perf_counter() - t0
        nb = sum(len(e.ids) for e in batch)
        print(f"hf {name}: load {load:.2f} s; encode 1 string: best {best:.3f} s "
              f"{len(data) / best / 1e6:.2f} MB/s {len(ids) / best:.0f} tokens/s ({len(ids)} tokens); "
              f"encode_batch {len(lines)} lines: {bt:.3f} s {len(data) / bt / 1e6:.2f} MB/s "
              f"({nb} tokens)")
        with open(os.path.join(a.out, f"{name}.ids"), "w") as f:
            f.write(",".join(map(str, ids)) + "\n")
        mine = os.path.join(a.out, f"{name}.moerack.ids")
        if os.path.exists(mine):
            other = [int(x) for x in open(mine).read().strip().split(",") if x]
            same = 0
            while same < min(len(ids), len(other)) and ids[same] == other[same]:
                same += 1
            if same == len(ids) == len(other):
                print(f"compare {name}: moerack ids identical ({len(ids)} ids)")
            else:
                ctx = tok.decode(ids[max(0, same - 20):same + 20])
                print(f"compare {name}: FIRST DIFFERENCE at id {same} of {len(ids)} (moerack "
                      f"{len(other)}): hf {ids[same:same + 8]} moerack {other[same:same + 8]} "
                      f"around {ctx!r}")


if __name__ == "__main__":
    main()
