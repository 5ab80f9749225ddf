#!/usr/bin/env python3
"""PyTorch peers of bench_cuda_attention (issue 7, must-show 2), at MiniMax-M1's real dims
(64 heads x 128, 8 KV heads), timed the same way: CUDA events around back-to-back calls, median
over repetitions after warm-up. One JSON line per case (keys op impl n ctx ms flop bytes tflops
gbs, as the C benchmark writes them) on stdout and to --json.

    python3 tests/bench/peer_attention.py --json peer.jsonl

Cases
  lightning_prefill / hf_chunked   the chunked lightning-attention prefill of the MiniMax-M1 release
      (spec section 3.3.4, dtype flow of section 4.1), written here in PyTorch: raw bf16 qkv
      [n][64*3*128] -> SiLU (bf16) -> q, k, v; per block of 256 tokens
          inter = (q * lambda^(i+1)) @ S            (bf16 * fp32 -> fp32, fp32 matmul)
          intra = (bf16(q @ k^T) * D) @ fp32(v)     (D[i,j] = lambda^(i-j), j <= i)
          out   = bf16(inter + intra)
          S     = lambda^m * S + bf16((k * lambda^(m-1-j))^T) @ v   (bf16 product added to fp32 S)
      fp32 decay tables; output [n][8192] bf16. PyTorch's default matmul precision is kept (fp32
      matmuls without TF32 unless --tf32). flop = n*H*(4*B*d + 4*d^2), B = 256 (as in the C bench).
      Checked first against the token-by-token recurrence in float64 on a small case.
  lightning_decode / hf_recurrent  the release's decode step for a batch of sequences: SiLU, split,
      S = lambda*S + k^T v (bf16 outer product added to the fp32 state), o = q @ bf16(S); bytes as
      in the C bench (4 MiB fp32 state read + written per sequence, qkv, out). Small batches rotate
      over several state sets (>= 512 MiB in all) so L2 does not serve them.
  softmax_prefill / sdpa_flash     F.scaled_dot_product_attention, causal, bf16, the flash backend,
      GQA through enable_gqa (expanded k, v if refused); q [1,64,n,128], k, v [1,8,n,128].
      sdpa_cudnn: the same through the cuDNN backend, where available. flop = 2*H*d*n^2.
  softmax_decode / sdpa_flash      one query per sequence against a contiguous bf16 cache of ctx
      keys, flash backend, the 8 query heads of a KV head folded into the query length
      (q [b,8,8,128], k, v [b,8,ctx,128], non-causal), so K and V are read once.
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

H, KV, D, B = 64, 8, 128, 256
ROT_SET_BYTES = 512 << 20

_json_file = None


def emit(**kv):
    line = json.dumps(kv, separators=(",", ":"))
    print(line, flush=True)
    if _json_file:
        _json_file.write(line + "\n")
        _json_file.flush()


def time_ms(fn, warm, reps, inner):
    """Median over reps of (events around `inner` back-to-back calls) / inner; fn(i) gets the call
    index (warm-up included) so it can rotate inputs."""
    it = 0
    for _ in range(warm):
        fn(it)
        it += 1
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(reps)]
    for e0, e1 in ev:
        e0.record()
        for _ in range(inner):
            fn(it)
            it += 1
        e1.record()
    torch.cuda.synchronize()
    return statistics.median(e0.elapsed_time(e1) / inner for e0, e1 in ev)


def reps_for(pred_ms):
    return 3 if pred_ms > 400 else 5 if pred_ms > 50 else 9 if pred_ms > 5 else 15


def slopes(layer, dev):
    """Per-head decay rates s_j of a lightning layer (spec 3.3.2), fp32 [H]."""
    base = torch.tensor([2.0 ** (-(j + 1) / 8.0) for j in range(H)], dtype=torch.float32)
    return (base * torch.tensor(1.0 - layer / 79.0 + 1e-5, dtype=torch.float32)).to(dev)


def hf_chunked_prefill(qkv, s, n_heads, act_dt=torch.bfloat16, acc_dt=torch.float32):
    """Chunked lightning prefill from a zero state. qkv [n][n_heads*3*d] in act_dt; s [n_heads]
    decay rates in acc_dt. Returns out [n][n_heads*d] in act_dt and the final state."""
    n = qkv.shape[0]
    d = qkv.shape[1] // (3 * n_heads)
    u = F.silu(qkv).view(1, n, n_heads, 3 * d)
    q, k, v = (t.transpose(1, 2) for t in u.split(d, dim=-1))  # [1, h, n, d]
    s = s.to(acc_dt).view(1, n_heads, 1, 1)
    idx = torch.arange(1, B + 1, device=qkv.device, dtype=acc_dt).view(-1, 1)
    q_decay = torch.exp(-s * idx)  # lambda^(i+1), i = 0..B-1
    k_decay = torch.exp(-s * (B - idx))  # lambda^(B-1-j)
    diff = idx - idx.view(1, -1)
    diag = torch.exp(torch.where(diff >= 0, -s * diff, torch.tensor(-math.inf, dtype=acc_dt,
                                                                    device=qkv.device)))
    state = torch.zeros(1, n_heads, d, d, dtype=acc_dt, device=qkv.device)
    out = torch.empty(1, n_heads, n, d, dtype=act_dt, device=qkv.device)
    for a in range(0, n, B):
        e = min(a + B, n)
        m = e - a
        qi, ki, vi = q[:, :, a:e], k[:, :, a:e], v[:, :, a:e]
        inter = torch.matmul(qi * q_decay[:, :, :m], state)
        qk = torch.matmul(qi, ki.transpose(-1, -2)).to(acc_dt) * diag[:, :, :m, :m]
        intra = torch.matmul(qk, vi.to(acc_dt))
        out[:, :, a:e] = inter + intra
        kd = (ki * k_decay[:, :, B - m:]).transpose(-1, -2).to(act_dt)
        state = torch.exp(-s * m) * state + torch.matmul(kd, vi)
    return out.transpose(1, 2).reshape(n, n_heads * d), state


def recurrent_prefill(qkv, s, n_heads):
    """The authoritative recurrence, token by token (spec 3.3.3), in qkv's dtype."""
    n = qkv.shape[0]
    d = qkv.shape[1] // (3 * n_heads)
    u = F.silu(qkv).view(n, n_heads, 3 * d)
    q, k, v = u.split(d, dim=-1)
    lam = torch.exp(-s.to(qkv.dtype)).view(n_heads, 1, 1)
    state = torch.zeros(n_heads, d, d, dtype=qkv.dtype, device=qkv.device)
    out = torch.empty(n, n_heads, d, dtype=qkv.dtype, device=qkv.device)
    for t in range(n):
        state = lam * state + k[t].unsqueeze(-1) * v[t].unsqueeze(-2)
        out[t] = torch.einsum("hd,hde->he", q[t], state)
    return out.reshape(n, n_heads * d), state


def self_check(dev):
    """The chunked algorithm equals the recurrence (float64, 600 tokens: two full blocks and a
    partial one; 4 heads with this layer's fastest and slowest decay)."""
    torch.manual_seed(1)
    h, d, n = 4, 32, 600
    s = slopes(0, dev)[torch.tensor([0, 21, 42, 63])].double()
    qkv = torch.rand(n, h * 3 * d, device=dev, dtype=torch.float64) * 2 - 1
    o1, s1 = hf_chunked_prefill(qkv, s, h, torch.float64, torch.float64)
    o2, s2 = recurrent_prefill(qkv, s, h)
    eo = ((o1 - o2).norm() / o2.norm()).item()
    es = ((s1.view(h, d, d) - s2).norm() / s2.norm()).item()
    ok = eo < 1e-10 and es < 1e-10
    print(f"self-check: chunked vs recurrence (float64, n={n}): out {eo:.2e}, state {es:.2e} "
          f"{'ok' if ok else 'FAILED'}")
    if not ok:
        sys.exit(1)


def peer_lightning_prefill(toks, dev):
    s = slopes(0, dev)
    max_n = max(toks)
    qkv_all = (torch.rand(max_n, H * 3 * D, device=dev, dtype=torch.bfloat16) * 2 - 1)
    for n in toks:
        qkv = qkv_all[:n]
        flop = n * H * (4.0 * B * D + 4.0 * D * D)
        pred = flop / 15e12 * 1e3
        try:
            ms = time_ms(lambda i: hf_chunked_prefill(qkv, s, H), 1, reps_for(pred), 1)
        except torch.cuda.OutOfMemoryError as err:
            print(f"lightning_prefill hf_chunked n={n}: out of memory ({err})")
            continue
        emit(op="lightning_prefill", impl="hf_chunked", n=n, ctx=0, ms=round(ms, 5), flop=flop,
             bytes=n * (H * 3 * D * 2 + H * D * 2), tflops=round(flop / ms * 1e-9, 3),
             gbs=round(n * (H * 3 * D * 2 + H * D * 2) / ms * 1e-6, 1),
             tf32=torch.backends.cuda.matmul.allow_tf32)
        torch.cuda.empty_cache()
    del qkv_all
    torch.cuda.empty_cache()


def peer_lightning_decode(batches, dev):
    s = slopes(0, dev)
    lam = torch.exp(-s).view(1, H, 1, 1)
    state_bytes = H * D * D * 4

    def step(qkv, st):
        b = qkv.shape[0]
        u = F.silu(qkv).view(b, H, 3 * D)
        q, k, v = u.split(D, dim=-1)
        st = lam * st + torch.einsum("bhd,bhe->bhde", k, v)
        o = torch.einsum("bhd,bhde->bhe", q, st.to(torch.bfloat16))
        return o.reshape(b, H * D), st

    for b in batches:
        sets = max(1, -(-ROT_SET_BYTES // (b * state_bytes)))
        states = [torch.rand(b, H, D, D, device=dev) - 0.5 for _ in range(sets)]
        qkv = torch.rand(b, H * 3 * D, device=dev, dtype=torch.bfloat16) * 2 - 1

        def call(i):
            _, states[i % sets] = step(qkv, states[i % sets])

        ms = time_ms(call, 3 * sets, 15, 20)
        byt = b * (2.0 * state_bytes + H * 3 * D * 2 + H * D * 4)
        emit(op="lightning_decode", impl="hf_recurrent", n=b, ctx=0, ms=round(ms, 5),
             flop=b * H * 5.0 * D * D, bytes=byt, tflops=round(b * H * 5.0 * D * D / ms * 1e-9, 3),
             gbs=round(byt / ms * 1e-6, 1), sets=sets)
        del states
        torch.cuda.empty_cache()


def sdpa_backends():
    from torch.nn.attention import SDPBackend
    out = [("sdpa_flash", SDPBackend.FLASH_ATTENTION)]
    if hasattr(SDPBackend, "CUDNN_ATTENTION"):
        out.append(("sdpa_cudnn", SDPBackend.CUDNN_ATTENTION))
    return out


def peer_softmax_prefill(toks, dev, cudnn):
    from torch.nn.attention import sdpa_kernel
    max_n = max(toks)
    q_all = torch.rand(1, max_n, H, D, device=dev, dtype=torch.bfloat16) * 2 - 1
    k_all = torch.rand(1, max_n, KV, D, device=dev, dtype=torch.bfloat16) * 2 - 1
    v_all = torch.rand(1, max_n, KV, D, device=dev, dtype=torch.bfloat16) * 2 - 1
    for name, backend in sdpa_backends():
        if name == "sdpa_cudnn" and not cudnn:
            continue
        for n in toks:
            q = q_all[:, :n].transpose(1, 2)
            k = k_all[:, :n].transpose(1, 2)
            v = v_all[:, :n].transpose(1, 2)
            flop = 2.0 * H * D * n * n
            gqa = "enable_gqa"

            def call(i, q=q, k=k, v=v):
                with sdpa_kernel(backend):
                    if gqa == "enable_gqa":
                        return F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                                              enable_gqa=True)
                    return F.scaled_dot_product_attention(q, ke, ve, is_causal=True)

            try:
                call(0)
            except (RuntimeError, TypeError) as err:
                print(f"{name} n={n}: enable_gqa refused ({str(err).splitlines()[0][:120]}); "
                      "expanding k, v")
                gqa = "expanded"
                ke = k.repeat_interleave(H // KV, dim=1)
                ve = v.repeat_interleave(H // KV, dim=1)
                try:
                    call(0)
                except RuntimeError as err2:
                    print(f"{name} n={n}: refused ({str(err2).splitlines()[0][:160]})")
                    continue
            pred = flop / 300e12 * 1e3
            inner = 10 if pred < 1 else 1
            ms = time_ms(call, 1 if pred > 400 else 2, reps_for(pred * inner), inner)
            byt = n * (2 * H * D * 2 + 2 * KV * D * 2)
            emit(op="softmax_prefill", impl=name, n=n, ctx=0, ms=round(ms, 5), flop=flop,
                 bytes=byt, tflops=round(flop / ms * 1e-9, 3), gbs=round(byt / ms * 1e-6, 1),
                 gqa=gqa)
            if gqa == "expanded":
                del ke, ve
            torch.cuda.empty_cache()
    del q_all, k_all, v_all
    torch.cuda.empty_cache()


def peer_softmax_decode(batches, ctxs, dev):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    g = H // KV
    for ctx in ctxs:
        for b in batches:
            seq_kv = ctx * KV * D * 2
            sets = max(1, -(-ROT_SET_BYTES // (2 * b * seq_kv)))
            try:
                ks = [torch.rand(b, KV, ctx, D, device=dev, dtype=torch.bfloat16) - 0.5
                      for _ in range(sets)]
                vs = [torch.rand(b, KV, ctx, D, device=dev, dtype=torch.bfloat16) - 0.5
                      for _ in range(sets)]
            except torch.cuda.OutOfMemoryError:
                print(f"softmax_decode b={b} ctx={ctx}: out of memory")
                continue
            q = torch.rand(b, KV, g, D, device=dev, dtype=torch.bfloat16) - 0.5

            def call(i):
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return F.scaled_dot_product_attention(q, ks[i % sets], vs[i % sets])

            byt = b * (ctx * KV * D * 2 * 2 + 2 * H * D * 2)
            pred = byt / 4e12 * 1e3
            ms = time_ms(call, 2 * sets, 11, 20 if pred < 0.5 else 3)
            emit(op="softmax_decode", impl="sdpa_flash", n=b, ctx=ctx, ms=round(ms, 5),
                 flop=b * 4.0 * H * D * ctx, bytes=byt,
                 tflops=round(b * 4.0 * H * D * ctx / ms * 1e-9, 3), gbs=round(byt / ms * 1e-6, 1),
                 sets=sets, form="q heads folded into length")
            del ks, vs
            torch.cuda.empty_cache()


def copy_bw(dev):
    a = torch.empty(1 << 30, device=dev, dtype=torch.bfloat16).uniform_()
    b = torch.empty_like(a)
    ms = time_ms(lambda i: b.copy_(a), 3, 15, 1)
    del a, b
    torch.cuda.empty_cache()
    return 2.0 * (2 << 30) / ms * 1e-6  # GB/s, read + write


def main():
    global _json_file
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", default="lp,ld,sp,sd")
    ap.add_argument("--lp-tokens", default="4096,32768,131072")
    ap.add_argument("--ld-batch", default="1,16,64,256")
    ap.add_argument("--sp-tokens", default="4096,32768,131072")
    ap.add_argument("--sd-batch", default="1,16,64,256")
    ap.add_argument("--sd-ctx", default="4096,32768")
    ap.add_argument("--no-cudnn", action="store_true", help="skip the cuDNN SDPA backend")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in fp32 matmuls (not HF's default)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ints = lambda s: [int(x) for x in s.split(",") if x]
    cases = set(args.cases.split(","))
    if not torch.cuda.is_available():
        print("no CUDA device: skipped")
        sys.exit(77)
    if args.json:
        _json_file = open(args.json, "w")
    if args.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
    dev = torch.device("cuda")
    torch.manual_seed(0)
    bw = copy_bw(dev)
    emit(op="device", impl="torch", n=0, ctx=0, ms=0, name=torch.cuda.get_device_name(),
         torch=torch.__version__, copy_gbs=round(bw, 1))
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}, copy {bw:.0f} GB/s, "
          f"matmul tf32 {torch.backends.cuda.matmul.allow_tf32}", flush=True)
    if "lp" in cases:
        self_check(dev)
        peer_lightning_prefill(ints(args.lp_tokens), dev)
    if "ld" in cases:
        peer_lightning_decode(ints(args.ld_batch), dev)
    if "sp" in cases:
        peer_softmax_prefill(ints(args.sp_tokens), dev, not args.no_cudnn)
    if "sd" in cases:
        peer_softmax_decode(ints(args.sd_batch), ints(args.sd_ctx), dev)
    if _json_file:
        _json_file.close()


if __name__ == "__main__":
    main()
