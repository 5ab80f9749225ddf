#!/usr/bin/env python3
"""Builds the large mixed text of the tokenizer benchmark (docs/performance.md) from files found on
the dev machine (Debian 12 + its toolchains), in a fixed order, and prints its size and SHA-256.
The text is not committed (about 10 MB); it is rebuilt with this script and carried to the GPU
machine compressed, so both tokenizers read the same bytes.

  python3 tests/reference/make_bench_text.py OUT.txt
"""
import glob
import hashlib
import sys

PY = "/root/.pyenv/versions/3.11.7/lib/python3.11"
RBE = "/root/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/rust-by-example"
PARTS = [  # (label, file globs, byte budget)
    ("english markdown (Node.js API docs)", ["/usr/share/doc/nodejs/api/*.md"], 3_000_000),
    ("python source (stdlib)", [PY + "/*.py"], 2_500_000),
    ("C headers", ["/usr/include/*.h"], 500_000),
    ("ja/ko/zh prose + code (Rust by Example)", [RBE + "/ja/print.html", RBE + "/ko/print.html",
                                                 RBE + "/zh/print.html"], 1_700_000),
    ("bg/ru/uk/el/ja/zh/ko prose (vim tutor)", ["/usr/share/vim/vim90/tutor/tutor.*.utf-8"], 400_000),
    ("multilingual XML (freedesktop MIME names)", ["/usr/share/mime/packages/freedesktop.org.xml"],
     2_400_000),
]


def main():
    out = []
    for label, globs, budget in PARTS:
        got = []
        n = 0
        for g in globs:
            for path in sorted(glob.glob(g)):
                if n >= budget:
                    break
                try:
                    text = open(path, encoding="utf-8").read()
                except (UnicodeDecodeError, OSError):
                    continue
                b = text.encode()
                take = b[: budget - n].decode("utf-8", errors="ignore")
                got.append(take)
                n += len(take.encode())
        out.append("".join(got))
        print(f"{label}: {n} bytes", file=sys.stderr)
    data = "\n".join(out).encode()
    open(sys.argv[1], "wb").write(data)
    print(f"{len(data)} bytes sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
