#!/usr/bin/env python3
"""The PyTorch peer of bench_cuda_experts: one MiniMax-M1 MoE layer in bf16 with torch._grouped_mm.

Same sizes (hidden 6144, FFN 9216, 32 experts, top-2), random weights, and the same routing ids
as the C benchmark (splitmix64, seed 1000003*n + 17). One call = sort the slots by expert, gather,
grouped gate/up GEMM, SiLU*up, grouped down GEMM, gate-weighted sum per token. Timed with CUDA
events around each call, median of repeated calls after warm-up. Writes "n,ms" lines to --csv.

    python3 tests/bench/peer_grouped_mm.py --tokens 1,8,32,128,512,2048,8192 --csv peer.csv
"""
import argparse
import statistics

import torch
import torch.nn.functional as F

H, I, E, K = 6144, 9216, 32, 2
M64 = (1 << 64) - 1


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def routing(n):
    s = (1000003 * n + 17) & M64
    ids, wts = [], []
    for _ in range(n):
        s, r0 = splitmix64(s)
        s, r1 = splitmix64(s)
        s, r2 = splitmix64(s)
        e0 = r0 % E
        e1 = r1 % (E - 1)
        if e1 >= e0:
            e1 += 1
        w0 = 0.5 + 0.5 * (r2 >> 40) / float(1 << 24)
        ids.append([e0, e1])
        wts.append([w0, 1.0 - w0])
    return ids, wts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", default="1,8,32,128,512,2048,8192")
    ap.add_argument("--csv", default=None)
    args = ap.parse_args()
    toks = [int(t) for t in args.tokens.split(",")]
    dev = torch.device("cuda")
    torch.manual_seed(0)
    # [E, N, K] contiguous; _grouped_mm takes the transposed (column-major) view
    w13 = (torch.rand(E, 2 * I, H, device=dev, dtype=torch.bfloat16) * 2 - 1) / H ** 0.5
    w2 = (torch.rand(E, H, I, device=dev, dtype=torch.bfloat16) * 2 - 1) / I ** 0.5
    pad16 = False

    def moe(x, ids, wts):
        n = x.shape[0]
        flat = ids.reshape(-1)
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(E, device=dev, dtype=torch.int64).scatter_add_(
            0, flat, torch.ones_like(flat))  # no host sync, unlike bincount
        if pad16:
            padded = (counts + 15) // 16 * 16
            offs = torch.cumsum(padded, 0).to(torch.int32)
            starts = torch.cumsum(padded, 0) - padded
            rank = torch.arange(flat.numel(), device=dev) - (torch.cumsum(counts, 0) - counts)[flat[order]]
            dst = starts[flat[order]] + rank
            xs = torch.zeros(int(padded.sum().item()), H, device=dev, dtype=x.dtype)
            xs[dst] = x[order // K]
        else:
            offs = torch.cumsum(counts, 0).to(torch.int32)
            xs = x[order // K]
        h = torch._grouped_mm(xs, w13.transpose(-2, -1), offs=offs)
        a = F.silu(h[:, :I]) * h[:, I:]
        y = torch._grouped_mm(a, w2.transpose(-2, -1), offs=offs)
        if pad16:
            y = y[dst]
        ys = torch.empty_like(y)
        ys[order] = y
        return (ys.view(n, K, H).float() * wts.unsqueeze(-1)).sum(1)

    rows = []
    for n in toks:
        ids_l, wts_l = routing(n)
        ids = torch.tensor(ids_l, device=dev, dtype=torch.int64)
        wts = torch.tensor(wts_l, device=dev, dtype=torch.float32)
        x = torch.rand(n, H, device=dev, dtype=torch.bfloat16) * 2 - 1
        try:
            moe(x, ids, wts)
        except RuntimeError as err:
            if pad16:
                raise
            print(f"peer: unpadded offsets refused ({str(err).splitlines()[0]}); padding groups to 16")
            pad16 = True
            moe(x, ids, wts)
        for _ in range(3):
            moe(x, ids, wts)
        torch.cuda.synchronize()
        iters = 40 if n <= 512 else 15
        # back to back, like the C benchmark: events around each call, one sync at the end
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(iters)]
        for e0, e1 in ev:
            e0.record()
            moe(x, ids, wts)
            e1.record()
        torch.cuda.synchronize()
        ms = statistics.median(e0.elapsed_time(e1) for e0, e1 in ev)
        rows.append((n, ms))
        print(f"peer torch._grouped_mm bf16  tokens {n:5d}  {ms:8.3f} ms{'  (groups padded to 16)' if pad16 else ''}")
    if args.csv:
        with open(args.csv, "w") as f:
            for n, ms in rows:
                f.write(f"{n},{ms:.4f}\n")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")


if __name__ == "__main__":
    main()
