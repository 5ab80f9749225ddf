#!/usr/bin/env python3
"""Golden token ids from Hugging Face `tokenizers` (the Rust library moerack must agree with).

For each tokenizer, encodes every string of tests/data/tokenizer/corpus.json with
encode(s, add_special_tokens=False) and decodes the ids back with skip_special_tokens=False, and
writes golden_<name>.json: {"meta": {...}, "ids": [[...], ...], "decoded": {"i": text, ...}} where
"decoded" lists only the strings whose decoding differs from the input (NFC for Qwen3).

Sources (each NAME=...):
  --json NAME=tokenizer.json        a tokenizer file as shipped
  --minimax NAME=merges.txt         MiniMax-M1 rebuilt from merges.txt by this script, independently
                                    of moerack (spec §7: byte tokens by byte value, 256 + merge
                                    rank, specials 200000..200025, the o200k-style regex)
  --train-pair NAME=DIR             trains a small byte-level BPE (vocab 2000) on the corpus, saves
                                    DIR/vocab.json + DIR/merges.txt, and uses them GPT-2 style
  --same-as NAME=OTHER              only checks that NAME gives OTHER's ids on the corpus
                                    (e.g. moerack's exported MiniMax tokenizer.json)
Runs on the GPU machine (python3 + tokenizers); no network needed.
"""
import argparse
import hashlib
import json
import os
import sys

import tokenizers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

MINIMAX_SPECIAL = [
    "<pad>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<reponame>",
    "<filename>", "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>",
    "<jupyter_start>", "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<empty_output>",
    "<commit_before>", "<commit_msg>", "<commit_after>", "<beginning_of_sentence>",
    "<end_of_sentence>", "<end_of_document>", "<function_call>", "<code_interpreter>", "<speech>",
    "<image>"]
# spec §7 (llama.cpp LLAMA_VOCAB_PRE_TYPE_MINIMAX_M2), alternatives joined by |
MINIMAX_REGEX = "|".join([
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"\p{N}{1,3}", r" ?[^\s\p{L}\p{N}]+[\r\n/]*", r"\s*[\r\n]+", r"\s+(?!\S)", r"\s+"])


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def minimax_tokenizer(merges_path):
    lines = open(merges_path, encoding="utf-8").read().split("\n")
    merges = [tuple(l.split(" ")) for l in lines if l and not l.startswith("#version")]
    vocab = {c: b for b, c in bytes_to_unicode().items()}
    for i, (a, b) in enumerate(merges):
        assert a + b not in vocab
        vocab[a + b] = 256 + i
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(MINIMAX_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                            for s in MINIMAX_SPECIAL])
    for i, s in enumerate(MINIMAX_SPECIAL):
        assert tok.token_to_id(s) == 200000 + i
    return tok


def pair_tokenizer(d):
    tok = Tokenizer(models.BPE.from_file(os.path.join(d, "vocab.json"),
                                         os.path.join(d, "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def train_pair(corpus, d):
    os.makedirs(d, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=2000, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.model.save(d)
    return pair_tokenizer(d)


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(tok, corpus):
    ids = [tok.encode(s, add_special_tokens=False).ids for s in corpus]
    dec = {}
    for i, (s, x) in enumerate(zip(corpus, ids)):
        d = tok.decode(x, skip_special_tokens=False)
        if d != s:
            dec[str(i)] = d
    return ids, dec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", action="append", default=[])
    ap.add_argument("--minimax", action="append", default=[])
    ap.add_argument("--train-pair", action="append", default=[])
    ap.add_argument("--same-as", action="append", default=[])
    a = ap.parse_args()
    corpus = json.load(open(a.corpus, encoding="utf-8"))
    os.makedirs(a.out, exist_ok=True)
    results = {}
    jobs = [(x, "json") for x in a.json] + [(x, "minimax") for x in a.minimax] + \
        [(x, "pair") for x in a.train_pair]
    for spec, kind in jobs:
        name, path = spec.split("=", 1)
        if kind == "json":
            tok, src = Tokenizer.from_file(path), {"file": os.path.basename(path), "sha256": sha256(path)}
        elif kind == "minimax":
            tok, src = minimax_tokenizer(path), {"merges_sha256": sha256(path),
                                                  "built_by": "tests/reference/tokenizer_goldens.py"}
        else:
            tok = train_pair(corpus, path)
            src = {"vocab_sha256": sha256(os.path.join(path, "vocab.json")),
                   "merges_sha256": sha256(os.path.join(path, "merges.txt"))}
        ids, dec = run(tok, corpus)
        results[name] = ids
        meta = {"tokenizers": tokenizers.__version__, "python": sys.version.split()[0],
                "source": src, "strings": len(corpus), "ids": sum(map(len, ids)),
                "call": "encode(s, add_special_tokens=False); decode(ids, skip_special_tokens=False)"}
        with open(os.path.join(a.out, f"golden_{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"meta": meta, "ids": ids, "decoded": dec}, f, ensure_ascii=False,
                      separators=(",", ":"))
        print(f"{name}: {meta['ids']} ids, {len(dec)} decodings differ from the input")
    for spec in a.same_as:
        name, rest = spec.split("=", 1)
        path, other = rest.split(",", 1)
        ids, _ = run(Tokenizer.from_file(path), corpus)
        same = sum(1 for x, y in zip(ids, results[other]) if x == y)
        print(f"{name} ({os.path.basename(path)}) agrees with {other} on {same}/{len(corpus)} strings")


if __name__ == "__main__":
    main()
