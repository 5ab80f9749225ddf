#!/usr/bin/env python3
"""Writes small tokenizer.json files that exercise what the real tokenizers under test do not:
every Split behaviour (with and without invert) on a pattern with empty matches, added tokens with
lstrip / rstrip / single_word / normalized (under NFC) / special, overlapping added tokens, an
unk_token with and without fuse_unk, ignore_merges, and ByteLevel's prefix space and GPT-2 regex.
All are built on the GPT-2 style pair of tests/data/tokenizer/gpt2small. Also writes the corpus
they are tested on. HF `tokenizers` gives their goldens (tokenizer_goldens.py, on the GPU machine).
  python3 tests/reference/make_synthetic_tokenizers.py
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
D = os.path.join(ROOT, "tests/data/tokenizer")
OUT = os.path.join(D, "synthetic")

BYTELEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}


def base():
    vocab = json.load(open(os.path.join(D, "gpt2small/vocab.json"), encoding="utf-8"))
    merges = [l for l in open(os.path.join(D, "gpt2small/merges.txt"), encoding="utf-8")
              .read().split("\n") if l and not l.startswith("#version")]
    return vocab, merges


def tokenizer(vocab, merges, pre, added=(), normalizer=None, **model):
    m = {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
         "ignore_merges": False, "vocab": vocab, "merges": merges}
    m.update(model)
    full = [dict({"single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
                  "special": False}, **a) for a in added]
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": full,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": None,
            "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True}, "model": m}


def main():
    os.makedirs(OUT, exist_ok=True)
    vocab, merges = base()
    n = max(vocab.values()) + 1
    made = {}
    for beh in ["Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"]:
        for inv in (False, True):
            split = {"type": "Split", "pattern": {"Regex": "[ \\-]+|x*"}, "behavior": beh,
                     "invert": inv}
            made[f"split_{beh}_{'inv' if inv else 'plain'}"] = tokenizer(
                vocab, merges, {"type": "Sequence", "pretokenizers": [split, BYTELEVEL]})
    added = [
        {"id": n, "content": "<mask>", "lstrip": True, "rstrip": True, "special": True},
        {"id": n + 1, "content": "[W]", "single_word": True},
        {"id": n + 2, "content": "ab", "single_word": True, "normalized": True},
        {"id": n + 3, "content": "e\u0301x", "normalized": True},
        {"id": n + 4, "content": " sp", "lstrip": True},
        {"id": n + 5, "content": "<|a|>", "special": True},
        {"id": n + 6, "content": "<|a|><|b|>"},
        {"id": n + 7, "content": "zz", "rstrip": True, "normalized": True},
        {"id": n + 8, "content": "\u00e9t\u00e9", "normalized": False},
    ]
    made["added_nfc_prefix_space"] = tokenizer(
        vocab, merges, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                        "use_regex": True}, added,
        {"type": "Sequence", "normalizers": [{"type": "NFC"}]})
    made["string_split_merged_next"] = tokenizer(vocab, merges, {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"String": "ab"}, "behavior": "MergedWithNext", "invert": False},
        {"type": "Split", "pattern": {"Regex": "\\s+(?!\\S)|\\p{N}"}, "behavior": "Isolated",
         "invert": False}, BYTELEVEL]})
    made["ignore_merges"] = tokenizer(vocab, merges, {"type": "ByteLevel", "add_prefix_space": False,
                                                      "trim_offsets": True, "use_regex": True},
                                      ignore_merges=True)
    # drop the byte tokens of '~' and 'q' (and every token and merge containing them): unk
    drop = [k for k in vocab if "~" in k or "q" in k]
    v2 = {k: i for k, i in vocab.items() if k not in drop}
    v2["<unk>"] = n
    m2 = [m for m in merges if "~" not in m and "q" not in m]
    for fuse in (True, False):
        made[f"unk_fuse_{str(fuse).lower()}"] = tokenizer(
            v2, m2, {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                     "use_regex": True}, unk_token="<unk>", fuse_unk=fuse)
    for name, t in made.items():
        with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(t, f, ensure_ascii=False, separators=(",", ":"))
    corpus = [
        "the-final--countdown", "a - b -- c", "xxyxx-zx", "x", "xx", "-", "", " ", "no delimiters",
        "hello <mask>  world", " <mask> ", "<mask><mask>", "a<mask>b", "  <mask>\n\t x",
        "a[W]b", "a [W] b", "[W]", "[W][W] x[W] [W]_", "ab cab ab_ab ab1 ab", "ab", "éab ab",
        "éx e\u0301x xe\u0301x", "e\u0301", " sp sp  sp", "sp", "<|a|><|b|><|a|>", "<|a|> <|b|>",
        "zz  zz\n\nzzz", "été e\u0301te\u0301", "~q~ ~~ qq", "~", "quick ~~~ tilde",
        "Hello world", "don't stop", "1234 56", "  leading", "trailing  ", "a\r\nb",
        "\u00a0nbsp\u3000x", "中文 ab 😀 [W]",
    ]
    corpus += json.load(open(os.path.join(D, "corpus.json"), encoding="utf-8"))[:24]
    with open(os.path.join(D, "synthetic_corpus.json"), "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"{len(made)} tokenizers, {len(corpus)} strings")


if __name__ == "__main__":
    main()
