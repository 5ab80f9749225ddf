#!/usr/bin/env python3
"""Writes tests/data/tokenizer/utf8_cases.json: byte strings (hand-picked edge cases of Unicode
Table 3-7 plus random ones) with what Python's UTF-8 codec says about them — first invalid offset
(UnicodeDecodeError.start), errors="replace" text (maximal-subpart U+FFFD substitution, as Rust's
from_utf8_lossy), and the complete prefix: the bytes before a trailing sequence that some
continuation bytes could still make a valid character (found by trying them; Python's incremental
decoder is not used for this, as it also holds back lead bytes that can never complete, e.g. ED A0).
  python3 tests/reference/utf8_goldens.py
"""
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EDGE = [b"", b"a", b"\x00", b"\x7f", b"\x80", b"\xbf", b"\xc0\x80", b"\xc1\xbf", b"\xc2\x80",
        b"\xdf\xbf", b"\xe0\x80\x80", b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf",
        b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xee\x80\x80", b"\xef\xbf\xbf", b"\xf0\x80\x80\x80",
        b"\xf0\x8f\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80",
        b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xe2\x82", b"\xe2\x82A", b"\xe2\x82\xac",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80", b"a\xf0\x9f", b"\xf0\x80\x80", b"\xc3",
        b"abc\xc3\xa9\xe2\x82", b"\xe1\x80\xe2\xf0\x91\x92\xf1\xbf\x41", b"\xed\xa0", b"\xf4\x90"]


def completable(tail):
    """True if tail is an incomplete prefix of a valid character."""
    def valid(x):
        try:
            return len(x.decode("utf-8")) == 1
        except UnicodeDecodeError:
            return False
    for total in range(len(tail) + 1, 5):
        more = total - len(tail)
        for first in range(0x80, 0xc0):  # only the first added byte may need a narrow range
            if valid(tail + bytes([first]) + b"\x80" * (more - 1)):
                return True
    return False


def case(b):
    try:
        b.decode("utf-8")
        bad = len(b)
    except UnicodeDecodeError as e:
        bad = e.start
    pending = 0
    for k in range(1, min(3, len(b)) + 1):
        if completable(b[-k:]):
            pending = k
            break
    return {"hex": b.hex(), "first_bad": bad,
            "lossy_hex": b.decode("utf-8", errors="replace").encode().hex(),
            "complete_prefix": len(b) - pending}


def main():
    rng = random.Random(7)
    pool = [b"a", b"\xc3\xa9", b"\xe4\xbd\xa0", b"\xf0\x9f\x98\x80", b"\x80", b"\xc3", b"\xe4\xbd",
            b"\xf0\x9f", b"\xff", b"\xed\xa0\x80", b"\xe0\x80"]
    rand = [b"".join(rng.choice(pool) for _ in range(rng.randrange(1, 8))) for _ in range(300)]
    rand += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12))) for _ in range(300)]
    out = os.path.join(ROOT, "tests/data/tokenizer/utf8_cases.json")
    with open(out, "w") as f:
        json.dump([case(b) for b in EDGE + rand], f, indent=0)
        f.write("\n")
    print(f"{len(EDGE) + len(rand)} cases -> {out}")


if __name__ == "__main__":
    main()
