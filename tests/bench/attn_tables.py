#!/usr/bin/env python3
"""Markdown tables for docs/performance.md from the JSON lines of one issue-7 device run:
bench_cuda_attention (--bench), peer_attention.py (--peer), bench_attn_slice (--slice), and the
80-layer decode estimate of must-show 4 (with the experts' share from bench_cuda_experts' CSV of
the GPU-worker issue, --experts-csv, when given).

    python3 tests/bench/attn_tables.py --bench bench.jsonl --peer peer.jsonl --slice slice.jsonl \
        [--experts-csv docs/perf-runs/cuda-issue9/run3/bench.csv] [--experts-fmt bf16]

Ratios: "vs peer" = peer time / our time (> 1: we are faster); "% floor" = physical floor / our
time, the floor being the measured copy bandwidth for decode (bytes moved, read + write) and the
measured bf16 GEMM rate for prefill (the FLOP formula of each table). Standard library only.

Must-show 4 (coordinator decode latency per token, 80 layers = 10 x the measured 8-layer slice):
    T(b, c) = 10 * (7 * L(b) + S(b) + A(b, c)) + H(b) + 80 * E(b)
  L(b)    one lightning layer at batch b without the experts (norms, qkv + gate projections,
          lightning decode, norm_gate, out projection, residual, router) - slice_decode
  S(b)    the softmax layer without attention and experts - slice_decode
  A(b, c) softmax decode attention at context c: the slice's value at its context c0 plus the
          per-position slope of bench_cuda_attention's softmax_decode between its two contexts
          (linear in c: the KV read); the slice's own batch-1 step at the prefill's full context
          is printed next to it as a check
  H(b)    final RMSNorm + fp32 LM head (200064 x 6144) + argmax - lm_head
  E(b)    one layer's routed experts at b tokens: bench_cuda_experts 'auto' at that token count
          (log-log interpolation between its measured counts), else the slice's dense stand-in
          (the bytes of two experts: right at b = 1, an underestimate above)
  Not included: expert transfers between coordinator and workers, sampling beyond argmax,
  host scheduling; the steps were timed as enqueued launches, not CUDA graphs.
"""
import argparse
import csv
import json
import math
import sys


def load(path):
    out = []
    if not path:
        return out
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError as err:
        print(f"<!-- {path}: {err} -->")
    return out


def find(rows, op, impl=None, **kv):
    for r in rows:
        if r.get("op") != op or (impl and r.get("impl") != impl):
            continue
        if all(r.get(k) == v for k, v in kv.items()):
            return r
    return None


def fmt_n(n):
    if n > 1024 and n % 1024 == 1:
        return fmt_n(n - 1) + "+1"
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}K"
    return str(n)


def f(v, nd=2):
    return "–" if v is None else f"{v:.{nd}f}"


def x(v, nd=2):
    """A ratio with its × sign, or a dash."""
    return "–" if v is None else f"{v:.{nd}f}×"


def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print()


def ratio(a, b):
    return a / b if a and b else None


def speed_tables(bench, peer):
    dev = find(bench, "device")
    bw = dev["copy_gbs"] if dev else None
    tc = dev["gemm_tflops"] if dev else None
    pdev = find(peer, "device")
    if dev:
        print(f"Device: {dev['name']}, {dev['sms']} SMs; measured in the same run: copy bandwidth "
              f"{bw:.0f} GB/s (read + write), bf16 GEMM {tc:.0f} TFLOP/s (8192³)"
              + (f"; peers: torch {pdev.get('torch')}, copy {pdev.get('copy_gbs')} GB/s" if pdev else "")
              + ".\n")

    print("**Lightning prefill, one layer** (64 heads × 128, bf16 qkv in, one sequence from a zero "
          "state). FLOP = n·H·(4·B·d + 4·d²), B = 256 (the chunked algorithm's block products, "
          "spec §4.5), for both. Target ≥ 10× the HF chunked algorithm.\n")
    rows = []
    for r in [x for x in bench if x["op"] == "lightning_prefill"]:
        p = find(peer, "lightning_prefill", "hf_chunked", n=r["n"])
        sp = ratio(p and p["ms"], r["ms"])
        rows.append([fmt_n(r["n"]), f(r["ms"], 3), f(r["tflops"], 1),
                     f(100 * r["tflops"] / tc if tc else None, 0) + "%",
                     f(p and p["ms"], 2), f(p and p["tflops"], 1), x(sp, 1),
                     "yes" if sp and sp >= 10 else "no" if sp else "–"])
    table(["tokens", "ms", "TFLOP/s", "of GEMM rate", "HF chunked ms", "HF TFLOP/s", "vs peer",
           "≥ 10×"], rows)

    print("**Softmax prefill, one layer** (64 q heads, 8 KV heads, d 128, causal; ours: fp32 q/k/v "
          "in, RoPE on 64 dims, bf16 paged cache write, fp32 out; SDPA: bf16 q/k/v, attention "
          "only). FLOP = 2·H·d·n². Target ≥ 0.9× SDPA (flash).\n")
    rows = []
    for r in [x for x in bench if x["op"] == "softmax_prefill"]:
        p = find(peer, "softmax_prefill", "sdpa_flash", n=r["n"])
        c = find(peer, "softmax_prefill", "sdpa_cudnn", n=r["n"])
        sp = ratio(p and p["ms"], r["ms"])
        rows.append([fmt_n(r["n"]), f(r["ms"], 3), f(r["tflops"], 0),
                     f(100 * r["tflops"] / tc if tc else None, 0) + "%", f(p and p["ms"], 3),
                     f(p and p["tflops"], 0), x(sp, 2),
                     "yes" if sp and sp >= 0.9 else "no" if sp else "–", f(c and c["ms"], 3),
                     x(ratio(c and c["ms"], r["ms"]), 2)])
    table(["tokens", "ms", "TFLOP/s", "of GEMM rate", "SDPA flash ms", "TFLOP/s", "vs flash",
           "≥ 0.9×", "SDPA cuDNN ms", "vs cuDNN"], rows)

    print("**Lightning decode step, one layer** (one token per sequence; bytes = per sequence the "
          "4 MiB fp32 state read + written, bf16 qkv read, fp32 out written). Target ≥ 70% of the "
          "copy bandwidth at batch ≥ 16.\n")
    rows = []
    for r in [x for x in bench if x["op"] == "lightning_decode"]:
        p = find(peer, "lightning_decode", "hf_recurrent", n=r["n"])
        pct = r["pct_floor"]
        rows.append([str(r["n"]), f(r["ms"] * 1e3, 1), f(r["bytes"] / 1e6, 1), f(r["gbs"], 0),
                     f(pct, 0) + "%",
                     ("yes" if pct >= 70 else "no") if r["n"] >= 16 else "(b < 16)",
                     f(p and p["ms"] * 1e3, 1), x(ratio(p and p["ms"], r["ms"]), 1)])
    table(["batch", "µs", "MB moved", "GB/s", "of copy BW", "≥ 70%", "HF recurrent µs", "vs peer"],
          rows)

    print("**Softmax decode step, one layer** (one token per sequence at context ctx; bytes = the "
          "bf16 K and V of ctx positions read once, plus q/k/v/out; SDPA: contiguous bf16 cache, "
          "the 8 q heads of a KV head folded into the query length).\n")
    rows = []
    for r in [x for x in bench if x["op"] == "softmax_decode"]:
        p = find(peer, "softmax_decode", "sdpa_flash", n=r["n"], ctx=r["ctx"])
        rows.append([str(r["n"]), fmt_n(r["ctx"]), f(r["ms"] * 1e3, 1), f(r["bytes"] / 1e6, 1),
                     f(r["gbs"], 0), f(r["pct_floor"], 0) + "%", f(p and p["ms"] * 1e3, 1),
                     x(ratio(p and p["ms"], r["ms"]), 2)])
    table(["batch", "ctx", "µs", "MB moved", "GB/s", "of copy BW", "SDPA flash µs", "vs peer"],
          rows)
    return bw


def slice_tables(sl):
    setup = find(sl, "slice_setup")
    if not setup:
        print("(no slice results)\n")
        return
    print(f"**8-layer slice prefill** (7 lightning + 1 softmax, real size, random weights; "
          f"chunks of {setup['chunk']} tokens; weights {setup['weights_gib']:.2f} GiB incl. the "
          f"experts' dense stand-in; softmax attention "
          f"{'timed' if setup.get('softmax_attn') else 'NOT in this build'}).\n")
    stages = ["norm", "proj_in", "attn", "norm_gate", "proj_out", "router", "experts"]
    runs = [r for r in sl if r["op"] == "slice_prefill"]
    cps = [r for r in sl if r["op"] == "slice_checkpoint"]
    rows = []
    for r in sorted(runs, key=lambda x: x["n"]):
        rows.append([fmt_n(r["n"]), "own run", f(r["ms"] / 1e3, 2), f(r["tok_s"], 0),
                     f(r["lin_ms"] / 1e3, 2), f(r["lin_attn_ms"] / 1e3, 2),
                     f(r["sm_ms"] / 1e3, 2), f(r["sm_attn_ms"] / 1e3, 2),
                     f(r["peak_used_gib"], 2), f(r["kv_gib"], 2)])
    for r in sorted(cps, key=lambda x: x["n"]):
        rows.append([fmt_n(r["n"]), f"prefix of {fmt_n(r['size'])}", f(r["ms"] / 1e3, 2),
                     f(r["n"] / (r["ms"] / 1e3), 0), f(r["lin_ms"] / 1e3, 2),
                     f(r["lin_attn_ms"] / 1e3, 2), f(r["sm_ms"] / 1e3, 2),
                     f(r["sm_attn_ms"] / 1e3, 2), f(r.get("used_gib"), 2) + " (pool for "
                     f"{fmt_n(r['size'])})", "–"])
    table(["tokens", "measured as", "wall s", "tokens/s", "7 lightning layers s",
           "of which lightning attention s", "softmax layer s", "of which softmax attention s",
           "peak GPU memory GiB", "KV cache GiB"], rows)

    # growth: time per token of each part between consecutive sizes (linear parts stay flat)
    pts = sorted([(r["n"], r) for r in cps] + [(r["n"], r) for r in runs if r["n"] == r["size"]
                                               and not any(c["n"] == r["n"] for c in cps)],
                 key=lambda x: x[0])
    seen, prev = set(), None
    rows = []
    for n, r in pts:
        if n in seen:
            continue
        seen.add(n)
        if prev:
            dn = n - prev[0]
            g = lambda k: (r[k] - prev[1][k]) / dn * 1e3  # µs per token over the interval
            rows.append([f"{fmt_n(prev[0])} → {fmt_n(n)}", f(g("lin_ms") / 7, 2),
                         f(g("lin_attn_ms") / 7, 3), f(g("sm_ms") - g("sm_attn_ms"), 2),
                         f(g("sm_attn_ms"), 2)])
        prev = (n, r)
    if rows:
        print("Per-token cost between sizes (µs per token; one lightning layer = the 7 layers / 7): "
              "the lightning layers and the softmax layer's projections stay flat (linear "
              "growth), the softmax attention grows with the context (quadratic total).\n")
        table(["interval", "lightning layer", "of which attention", "softmax layer w/o attention",
               "softmax attention"], rows)

    if runs:
        r = max(runs, key=lambda x: x["n"])
        print(f"Stage split of the {fmt_n(r['n'])}-token run (s; lightning = all 7 layers):\n")
        table(["stage"] + stages + ["total"],
              [["7 lightning"] + [f(r[f"lin_{s}_ms"] / 1e3, 2) for s in stages]
               + [f(r["lin_ms"] / 1e3, 2)],
               ["softmax"] + [f(r[f"sm_{s}_ms"] / 1e3, 2) for s in stages]
               + [f(r["sm_ms"] / 1e3, 2)]])


def experts_ms(path, fmt_name):
    """tokens -> ms of the 'auto' variant in bench_cuda_experts' CSV."""
    out = {}
    if not path:
        return out
    try:
        with open(path) as fh:
            for row in csv.DictReader(fh):
                if row.get("fmt") == fmt_name and row.get("variant") == "auto":
                    out[int(row["tokens"])] = float(row["ms"])
    except OSError as err:
        print(f"<!-- {path}: {err} -->")
    return out


def interp_loglog(tab, b):
    if not tab:
        return None
    if b in tab:
        return tab[b]
    ks = sorted(tab)
    lo = max([k for k in ks if k < b], default=None)
    hi = min([k for k in ks if k > b], default=None)
    if lo is None or hi is None:
        return None
    t = (math.log(b) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return math.exp(math.log(tab[lo]) + t * (math.log(tab[hi]) - math.log(tab[lo])))


def decode_estimate(sl, bench, exp_tab, fmt_name):
    decs = [r for r in sl if r["op"] == "slice_decode"]
    heads = {r["n"]: r["ms"] for r in sl if r["op"] == "lm_head"}
    if not decs:
        print("(no slice decode results)\n")
        return
    print("**Must-show 4: coordinator decode latency per token, 80 layers**, from the slice "
          "(L, S, A at its context), bench_cuda_attention's softmax decode (A's slope in the "
          "context) and the LM head, all measured in this run:\n")
    print("    T(b, c) = 10 · (7·L(b) + S(b) + A(b, c)) + H(b) + 80 · E(b)\n")
    rows = []
    for r in sorted(decs, key=lambda x: (x["n"], x["ctx"])):
        e = interp_loglog(exp_tab, r["n"])
        rows.append([str(r["n"]), fmt_n(r["ctx"]), f(r["ms"], 3), f(r["lin_layer_ms"], 3),
                     f(r["lin_attn_ms"], 4), f(r["sm_rest_ms"], 3), f(r["sm_attn_ms"], 4),
                     f(r["router_ms"], 4), f(r["experts_ms"], 3),
                     f(e, 3) if e else "–", f(heads.get(r["n"]), 3)])
    table(["batch", "ctx", "slice step ms", "L ms", "of which lightning attn", "S ms", "A ms",
           "router ms", "stand-in experts ms", f"E ms ({fmt_name}, issue 9)", "H ms"], rows)

    def slope(b):
        pts = sorted([(x["ctx"], x["ms"]) for x in bench
                      if x["op"] == "softmax_decode" and x["n"] == b])
        if len(pts) >= 2 and pts[-1][0] > pts[0][0]:
            return (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
        return None

    ctxs = [4096, 32768, 131072, 1048576]
    rows = []
    batches = sorted({r["n"] for r in decs})
    for b in batches:
        base = min([r for r in decs if r["n"] == b], key=lambda x: x["ctx"])
        k = slope(b)
        e_meas = interp_loglog(exp_tab, b)
        e = e_meas if e_meas else base["experts_ms"]
        h = heads.get(b, 0.0)
        for c in ctxs:
            a = base["sm_attn_ms"] + (k * (c - base["ctx"]) if k is not None else 0.0)
            if k is None and c != base["ctx"]:
                continue
            coord = 10 * (7 * base["lin_layer_ms"] + base["sm_rest_ms"] + a) + h
            tot = coord + 80 * e
            meas = [x for x in decs if x["n"] == b and abs(x["ctx"] - c) <= 1]
            rows.append([str(b), fmt_n(c), f(a, 3),
                         f(meas[0]["sm_attn_ms"], 3) if meas and meas[0] is not base else "",
                         f(coord, 2), f(80 * e, 2),
                         "issue 9" if e_meas else "stand-in", f(tot, 2), f(1e3 / tot, 1),
                         f(b * 1e3 / tot, 0)])
    table(["batch", "ctx", "A(b,c) ms", "A measured", "coordinator ms (no experts)",
           "80 · E ms", "E from", "T ms/token", "tokens/s per seq", "tokens/s all"], rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench")
    ap.add_argument("--peer")
    ap.add_argument("--slice")
    ap.add_argument("--experts-csv")
    ap.add_argument("--experts-fmt", default="bf16")
    a = ap.parse_args()
    bench, peer, sl = load(a.bench), load(a.peer), load(a.slice)
    speed_tables(bench, peer)
    slice_tables(sl)
    decode_estimate(sl, bench, experts_ms(a.experts_csv, a.experts_fmt), a.experts_fmt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
