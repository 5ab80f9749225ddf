#!/usr/bin/python3
"""Independent float64 PyTorch reference for MiniMax-M1 (MiniMax-Text-01 architecture).

Written from /work/shared/minimax-m1-spec.md (sections 1, 2, 3, 4.3, 9, 10) only.
It is deliberately simple rather than fast:

  * every weight is upcast to float64 at load time and all maths runs in float64;
  * lightning attention is evaluated in its exact closed form over the whole sequence,
        O = ((Q K^T) * D) V,   D[t, i] = lambda^(t-i) for i <= t, else 0,
    i.e. NOT the chunked algorithm the engine uses, so the two are independent;
  * every call recomputes the whole sequence (no caches).

Only two fp32 emulations are kept because the spec makes them part of the function:
  * lightning decay: slope ladder in double -> fp32, times the layer factor in fp32, lambda = exp(-s) rounded
    to fp32 (correctly rounded: exp in double, then to fp32); powers lambda^n in float64;
  * RoPE angle: fp32(p) * fp32(omega_c) rounded to fp32; cos/sin then in float64.

Needs: torch (1.13 works), numpy.  Use /usr/bin/python3 on the dev box.

CLI:
  minimax_ref.py --model DIR --ids 1,2,3 [--greedy N]    print argmax / greedy continuation
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# safetensors (own parser)
# ----------------------------------------------------------------------------------------------

_ST_DTYPES = {
    # name: (numpy dtype of the raw element, element size)
    "BF16": (np.uint16, 2),
    "F16": (np.float16, 2),
    "F32": (np.float32, 4),
    "F64": (np.float64, 8),
}


def read_safetensors_header(path):
    """Return (header dict without __metadata__, metadata dict or None, data_start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: file shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", raw)
        size = os.path.getsize(path)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds file size {size}")
        hdr = json.loads(f.read(n).decode("utf-8"))
    if not isinstance(hdr, dict):
        raise ValueError(f"{path}: header is not a JSON object")
    meta = hdr.pop("__metadata__", None)
    return hdr, meta, 8 + n


def _decode(raw, dtype, shape, name):
    if dtype not in _ST_DTYPES:
        raise ValueError(f"tensor {name}: unsupported dtype {dtype}")
    npdt, esz = _ST_DTYPES[dtype]
    count = int(np.prod(shape)) if len(shape) else 1
    if len(raw) != count * esz:
        raise ValueError(f"tensor {name}: {len(raw)} bytes for shape {shape} dtype {dtype}")
    a = np.frombuffer(raw, dtype=np.dtype(npdt).newbyteorder("<"))
    if dtype == "BF16":
        a = (a.astype(np.uint32) << 16).view(np.float32)  # bf16 bits are the top half of an fp32
    return torch.from_numpy(a.astype(np.float64).reshape(shape))


def read_safetensors(path, names=None):
    """Read tensors from one .safetensors file as float64 torch tensors. names: optional subset."""
    hdr, _meta, start = read_safetensors_header(path)
    size = os.path.getsize(path)
    out = {}
    with open(path, "rb") as f:
        for name, info in hdr.items():
            if names is not None and name not in names:
                continue
            b, e = info["data_offsets"]
            if not (0 <= b <= e and start + e <= size):
                raise ValueError(f"{path}: tensor {name} offsets {b},{e} out of range")
            f.seek(start + b)
            out[name] = _decode(f.read(e - b), info["dtype"], list(info["shape"]), name)
    return out


# ----------------------------------------------------------------------------------------------
# checkpoint
# ----------------------------------------------------------------------------------------------

class Model:
    """Plain holder: cfg (dict, original MiniMax-M1 key names) and w (name -> float64 tensor)."""

    def __init__(self, cfg, w, dtypes):
        self.cfg = cfg
        self.w = w
        self.dtypes = dtypes  # name -> stored safetensors dtype string
        c = cfg
        self.hidden = int(c["hidden_size"])
        self.L = int(c["num_hidden_layers"])
        self.H = int(c["num_attention_heads"])
        self.KV = int(c.get("num_key_value_heads", self.H))
        self.d = int(c.get("head_dim") or self.hidden // self.H)
        self.rotary_dim = int(c.get("rotary_dim") or self.d)
        self.theta = float(c.get("rope_theta", 10000.0))
        self.V = int(c["vocab_size"])
        self.I = int(c["intermediate_size"])
        self.E = int(c["num_local_experts"])
        self.topk = int(c["num_experts_per_tok"])
        self.types = [int(t) for t in c["attn_type_list"]]
        self.eps = float(c.get("rms_norm_eps", 1e-5))
        self.eps_la = 1e-6  # spec 3.3.5: lightning output norm eps (M1/remote, HF)
        self.alpha_la = float(c.get("layernorm_linear_attention_alpha", 1.0))
        self.beta_la = float(c.get("layernorm_linear_attention_beta", 1.0))
        self.alpha_fa = float(c.get("layernorm_full_attention_alpha", 1.0))
        self.beta_fa = float(c.get("layernorm_full_attention_beta", 1.0))
        self.alpha_mlp = float(c.get("layernorm_mlp_alpha", 1.0))
        self.beta_mlp = float(c.get("layernorm_mlp_beta", 1.0))
        if not c.get("postnorm", True):
            raise ValueError("config postnorm=false is not MiniMax-M1; this reference implements postnorm only")
        if len(self.types) != self.L:
            raise ValueError(f"attn_type_list has {len(self.types)} entries, num_hidden_layers={self.L}")
        if any(t not in (0, 1) for t in self.types):
            raise ValueError("attn_type_list entries must be 0 (lightning) or 1 (softmax)")
        if self.H % self.KV:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.rotary_dim % 2 or self.rotary_dim > self.d:
            raise ValueError("rotary_dim must be even and <= head_dim")
        if 0 in self.types and (self.H & (self.H - 1)):
            raise ValueError("lightning slopes need num_attention_heads to be a power of two")
        if c.get("shared_intermediate_size", 0):
            raise ValueError("shared experts (shared_intermediate_size > 0) are not part of MiniMax-M1")
        self._D = {}
        self.lam = {l: lightning_decay(self.H, l, self.L) for l in range(self.L) if self.types[l] == 0}
        self._check_shapes()

    def decay_cache(self, l, T):
        """decay_matrix(lam_l, T') for some T' >= T, kept between calls (the [T, T] block does not depend on T')."""
        D = self._D.get(l)
        if D is None or D.shape[-1] < T:
            D = decay_matrix(self.lam[l], max(T, 640))
            self._D[l] = D
        return D

    def lm_head(self):
        if "lm_head.weight" in self.w:
            return self.w["lm_head.weight"]
        if self.cfg.get("tie_word_embeddings", False):
            return self.w["model.embed_tokens.weight"]
        raise KeyError("lm_head.weight missing and tie_word_embeddings is false")

    def expected_shapes(self):
        hd, H, KV, d, I, E, V = self.hidden, self.H, self.KV, self.d, self.I, self.E, self.V
        s = {"model.embed_tokens.weight": [V, hd], "model.norm.weight": [hd]}
        if not self.cfg.get("tie_word_embeddings", False):
            s["lm_head.weight"] = [V, hd]
        for l in range(self.L):
            p = f"model.layers.{l}."
            s[p + "input_layernorm.weight"] = [hd]
            s[p + "post_attention_layernorm.weight"] = [hd]
            s[p + "block_sparse_moe.gate.weight"] = [E, hd]
            for e in range(E):
                q = p + f"block_sparse_moe.experts.{e}."
                s[q + "w1.weight"] = [I, hd]
                s[q + "w3.weight"] = [I, hd]
                s[q + "w2.weight"] = [hd, I]
            if self.types[l] == 0:
                s[p + "self_attn.qkv_proj.weight"] = [3 * H * d, hd]
                s[p + "self_attn.output_gate.weight"] = [H * d, hd]
                s[p + "self_attn.norm.weight"] = [H * d]
                s[p + "self_attn.out_proj.weight"] = [hd, H * d]
            else:
                s[p + "self_attn.q_proj.weight"] = [H * d, hd]
                s[p + "self_attn.k_proj.weight"] = [KV * d, hd]
                s[p + "self_attn.v_proj.weight"] = [KV * d, hd]
                s[p + "self_attn.o_proj.weight"] = [hd, H * d]
        return s

    def _check_shapes(self):
        exp = self.expected_shapes()
        missing = [n for n in exp if n not in self.w]
        if missing:
            raise KeyError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:5]}")
        for n, shp in exp.items():
            if list(self.w[n].shape) != shp:
                raise ValueError(f"{n}: shape {list(self.w[n].shape)}, expected {shp}")
        extra = [n for n in self.w if n not in exp and not n.endswith("rotary_emb.inv_freq")]
        if extra:
            raise KeyError(f"checkpoint has {len(extra)} unexpected tensors, e.g. {extra[:5]}")


def load_checkpoint(d):
    """Load config.json + model.safetensors.index.json + shards from directory d."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    idx_path = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            wm = json.load(f)["weight_map"]
        shards = {}
        for name, fn in wm.items():
            shards.setdefault(fn, set()).add(name)
    else:  # single-file checkpoint
        shards = {"model.safetensors": None}
    w, dtypes = {}, {}
    for fn, names in sorted(shards.items()):
        path = os.path.join(d, fn)
        hdr, _, _ = read_safetensors_header(path)
        if names is not None:
            absent = names - set(hdr)
            if absent:
                raise KeyError(f"{fn}: index lists tensors the shard lacks, e.g. {sorted(absent)[:3]}")
        t = read_safetensors(path, names)
        for n, v in t.items():
            if n in w:
                raise KeyError(f"tensor {n} appears in more than one shard")
            w[n] = v
            dtypes[n] = hdr[n]["dtype"]
    return Model(cfg, w, dtypes)


# ----------------------------------------------------------------------------------------------
# pieces of the forward (spec section 3)
# ----------------------------------------------------------------------------------------------

def rms(x, w, eps):
    """RMS_eps(x; w) = w * x / sqrt(mean(x^2) + eps) over the last dim, float64."""
    return w * x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps)


def silu(x):
    return x * torch.sigmoid(x)


def lightning_slopes(H):
    """Base ALiBi ladder s_j = start^(j+1), start = 2^(-2^(-(log2 H - 3))), in Python doubles."""
    lg = math.log2(H)
    if lg != int(lg):
        raise ValueError(f"lightning slopes need a power-of-two head count, got {H}")
    start = 2.0 ** (-(2.0 ** -(lg - 3)))
    return [start ** (j + 1) for j in range(H)]


def lightning_rates(H, l, L):
    """Per-head decay rate s_{l,j} as an fp32 tensor.

    slope (double) -> fp32; factor (1 - l/(L-1) + 1e-5) in double -> fp32; product rounded to fp32.
    L == 1 (no (L-1) to divide by) is treated as l/(L-1) = 0 -- an extension, the real model has L = 80.
    """
    s = torch.tensor(lightning_slopes(H), dtype=torch.float64).to(torch.float32)
    ratio = l / (L - 1) if L > 1 else 0.0
    factor = torch.tensor(1.0 - ratio + 1e-5, dtype=torch.float64).to(torch.float32)
    s_l = (s * factor).to(torch.float32)  # fp32 x fp32 -> fp32
    assert s_l.dtype == torch.float32
    return s_l


def lightning_decay(H, l, L):
    """Per-head decay lambda = exp(-s_{l,j}) as an fp32 number (returned as float64 values of fp32 numbers).

    The fp32 exp is taken as the correctly rounded one: exp in double, then rounded to fp32.  (torch's own fp32
    exp is off by one ulp for ~4% of these arguments on some builds, which would make goldens depend on the
    torch version; a 1-ulp lambda moves 600-token logits by ~1e-6 relative.)
    """
    s = lightning_rates(H, l, L)
    lam = torch.tensor([math.exp(-x) for x in s.tolist()], dtype=torch.float64).to(torch.float32)
    assert lam.dtype == torch.float32
    return lam.to(torch.float64)


def decay_powers(lam, T):
    """P[h, n] = lam[h]^n for n = 0..T-1, float64, one scalar libm pow per entry.

    Scalar Python pow (not a vectorised torch op) so each entry is independent of T and of the SIMD path taken,
    which keeps the reference bit-reproducible whatever lengths were computed before.
    """
    return torch.tensor([[float(l) ** n for n in range(T)] for l in lam.tolist()], dtype=torch.float64)


def decay_matrix(lam, T):
    """D[h, t, i] = lam[h]^(t-i) for i <= t, 0 otherwise; float64 [H, T, T]."""
    t = torch.arange(T)
    diff = t[:, None] - t[None, :]  # t - i
    D = decay_powers(lam, T)[:, diff.clamp(min=0)]  # gather: [H, T, T]
    return torch.where((diff >= 0)[None], D, torch.zeros((), dtype=torch.float64))


def lightning_core(q, k, v, lam, D=None):
    """Closed form o_t = sum_{i<=t} lam^(t-i) (q_t . k_i) v_i.  q,k,v: [T, H, d]; returns [T, H, d].

    D: optional precomputed decay_matrix(lam, T') with T' >= T (its leading [T, T] block is used).
    """
    T = q.shape[0]
    D = decay_matrix(lam, T) if D is None else D[:, :T, :T]  # [H, T, T]
    qh, kh, vh = (x.permute(1, 0, 2).contiguous() for x in (q, k, v))  # [H, T, d]
    A = torch.matmul(qh, kh.transpose(1, 2)) * D  # (Q K^T) (.) D per head
    return torch.matmul(A, vh).permute(1, 0, 2)


def lightning_attention(m, l, h, trace=None):
    p = f"model.layers.{l}.self_attn."
    T = h.shape[0]
    H, d = m.H, m.d
    u = silu(h @ m.w[p + "qkv_proj.weight"].T)  # SiLU over the whole qkv output, before the split
    u = u.view(T, H, 3, d)  # row r -> head r // 3d, part (r % 3d) // d, dim r % d
    q, k, v = u[:, :, 0, :], u[:, :, 1, :], u[:, :, 2, :]
    o = lightning_core(q, k, v, m.lam[l], m.decay_cache(l, T)).reshape(T, H * d)  # head-major concat
    z = rms(o, m.w[p + "norm.weight"], m.eps_la)  # over all H*d channels jointly
    gate = torch.sigmoid(h @ m.w[p + "output_gate.weight"].T)  # gate from the normalised layer input
    if trace is not None:
        trace.update(q=q, k=k, v=v, o=o, z=z, gate=gate)
    return (gate * z) @ m.w[p + "out_proj.weight"].T


def rope_cos_sin(positions, rotary_dim, theta):
    """cos/sin [T, rotary_dim/2] float64, angle = fp32(fp32(p) * fp32(omega_c)), omega_c = theta^(-2c/rd)."""
    half = rotary_dim // 2
    omega = torch.tensor([theta ** (-2.0 * c / rotary_dim) for c in range(half)], dtype=torch.float64)
    omega32 = omega.to(torch.float32)
    p32 = torch.as_tensor(positions, dtype=torch.float64).to(torch.float32)
    ang = (p32[:, None] * omega32[None, :]).to(torch.float32)  # fp32 product, rounded to fp32
    ang = ang.to(torch.float64)
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x, cos, sin, rotary_dim):
    """Partial NeoX rope: pairs (c, c + rd/2) for c < rd/2; dims >= rotary_dim unchanged. x: [T, heads, d]."""
    half = rotary_dim // 2
    x1 = x[..., :half]
    x2 = x[..., half:rotary_dim]
    c = cos[:, None, :]
    s = sin[:, None, :]
    r1 = x1 * c - x2 * s
    r2 = x2 * c + x1 * s
    return torch.cat([r1, r2, x[..., rotary_dim:]], dim=-1)


def softmax_attention(m, l, h, trace=None):
    p = f"model.layers.{l}.self_attn."
    T = h.shape[0]
    H, KV, d = m.H, m.KV, m.d
    q = (h @ m.w[p + "q_proj.weight"].T).view(T, H, d)
    k = (h @ m.w[p + "k_proj.weight"].T).view(T, KV, d)
    v = (h @ m.w[p + "v_proj.weight"].T).view(T, KV, d)
    cos, sin = rope_cos_sin(list(range(T)), m.rotary_dim, m.theta)  # positions 0-based absolute
    q = apply_rope(q, cos, sin, m.rotary_dim)
    k = apply_rope(k, cos, sin, m.rotary_dim)
    group = H // KV
    kv_of = torch.arange(H) // group  # q head j uses kv head j // (H/KV)
    kq = k[:, kv_of, :]  # [T, H, d]
    vq = v[:, kv_of, :]
    qh, kh, vh = (x.permute(1, 0, 2).contiguous() for x in (q, kq, vq))  # [H, T, d]
    s = torch.matmul(qh, kh.transpose(1, 2)) / math.sqrt(d)  # [H, T, T]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    s = s.masked_fill(~causal[None], float("-inf"))
    a = torch.softmax(s, dim=-1)
    o = torch.matmul(a, vh).permute(1, 0, 2).reshape(T, H * d)
    if trace is not None:
        trace.update(q=q, k=k, v=v, o=o)
    return o @ m.w[p + "o_proj.weight"].T


def topk_lowest_index_ties(p, k):
    """Top-k per row of p [T, E]; ties broken by lower expert index. Returns (idx [T,k] long, vals [T,k])."""
    a = p.detach().cpu().numpy()
    order = np.argsort(-a, axis=-1, kind="stable")[:, :k]  # stable: equal values keep ascending index
    idx = torch.from_numpy(order.copy()).long()
    return idx, torch.gather(p, 1, idx)


def moe(m, l, g, trace=None):
    p = f"model.layers.{l}.block_sparse_moe."
    T = g.shape[0]
    logits = g @ m.w[p + "gate.weight"].T  # [T, E] float64
    probs = torch.softmax(logits, dim=-1)
    idx, val = topk_lowest_index_ties(probs, m.topk)
    wsel = val / val.sum(dim=-1, keepdim=True)  # renormalise over the chosen k
    W = torch.zeros(T, m.E, dtype=torch.float64)
    W.scatter_(1, idx, wsel)
    out = torch.zeros_like(g)
    for e in range(m.E):
        rows = (W[:, e] != 0).nonzero().flatten()
        if rows.numel() == 0:
            continue
        q = p + f"experts.{e}."
        x = g[rows]
        y = (silu(x @ m.w[q + "w1.weight"].T) * (x @ m.w[q + "w3.weight"].T)) @ m.w[q + "w2.weight"].T
        out[rows] += W[rows, e:e + 1] * y
    if trace is not None:
        trace.update(router_logits=logits, experts=idx, expert_weights=wsel)
    return out


# ----------------------------------------------------------------------------------------------
# full forward
# ----------------------------------------------------------------------------------------------

def forward(m, ids, return_hidden=False, layer_hook=None):
    """Full-sequence forward.  Returns logits [T, V] float64, and with return_hidden=True also a dict:

      hidden[0]            embedding output
      hidden[l + 1]        output x' of decoder layer l (l = 0 .. L-1)
      final_norm           RMS(x^L; model.norm.weight)
      attn_out[l]          Attn_l(h) (before the alpha/beta combine)
      moe_out[l]           MoE_l(g)
      traces[l]            dict of intermediates of layer l (q, k, v, o, router logits, experts, ...)

    layer_hook(l, x_out, info_dict) is called after every layer if given.
    """
    ids = [int(i) for i in ids]
    if not ids:
        raise ValueError("empty sequence")
    if min(ids) < 0 or max(ids) >= m.V:
        raise ValueError(f"token id out of range [0, {m.V})")
    x = m.w["model.embed_tokens.weight"][torch.tensor(ids)]
    hidden, attn_outs, moe_outs, traces = [x], [], [], []
    for l in range(m.L):
        p = f"model.layers.{l}."
        tr = {} if return_hidden else None
        h = rms(x, m.w[p + "input_layernorm.weight"], m.eps)
        if m.types[l] == 0:
            a = lightning_attention(m, l, h, tr)
            y = m.alpha_la * h + m.beta_la * a
        else:
            a = softmax_attention(m, l, h, tr)
            y = m.alpha_fa * h + m.beta_fa * a
        g = rms(y, m.w[p + "post_attention_layernorm.weight"], m.eps)
        f = moe(m, l, g, tr)
        x = m.alpha_mlp * g + m.beta_mlp * f
        if return_hidden:
            hidden.append(x)
            attn_outs.append(a)
            moe_outs.append(f)
            tr.update(h=h, y=y, g=g)
            traces.append(tr)
        if layer_hook is not None:
            layer_hook(l, x, {"h": h, "attn": a, "y": y, "g": g, "moe": f})
    xf = rms(x, m.w["model.norm.weight"], m.eps)
    logits = xf @ m.lm_head().T
    if not return_hidden:
        return logits
    return logits, {"hidden": hidden, "final_norm": xf, "attn_out": attn_outs, "moe_out": moe_outs,
                    "traces": traces}


def logits_for_sequence(m, ids):
    """[len(ids), vocab] float64 logits, full recompute."""
    return forward(m, ids)


def argmax_lowest(row):
    """argmax with ties -> lowest id (numpy returns the first occurrence)."""
    return int(np.argmax(row.detach().cpu().numpy()))


def greedy(m, prompt, n):
    """Greedy decode n tokens with a full recompute per step.

    Returns (generated ids [n], rows [n+1, V] float64): row 0 = logits at the last prompt position; row i (i>=1)
    = logits at the position of generated token g_i after appending it.  g_{i+1} = argmax(row i).
    """
    seq = [int(t) for t in prompt]
    rows, gen = [], []
    row = logits_for_sequence(m, seq)[-1]
    rows.append(row)
    for _ in range(n):
        t = argmax_lowest(row)
        gen.append(t)
        seq.append(t)
        row = logits_for_sequence(m, seq)[-1]
        rows.append(row)
    return gen, torch.stack(rows)


# ----------------------------------------------------------------------------------------------
# prompt-id rule shared with make_goldens.py / hf_crosscheck.py
# ----------------------------------------------------------------------------------------------

GOLDEN_LENGTHS = [1, 255, 256, 257, 600]


def prompt_ids(seed, case_index, length, vocab_size):
    """x = (seed*1000003 + c*7919 + 17) mod 2^32; per position x = (1664525 x + 1013904223) mod 2^32, id = x % V."""
    M = 1 << 32
    x = (seed * 1000003 + case_index * 7919 + 17) % M
    out = []
    for _ in range(length):
        x = (1664525 * x + 1013904223) % M
        out.append(x % vocab_size)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory")
    ap.add_argument("--ids", help="comma-separated prompt ids")
    ap.add_argument("--seed", type=int, default=0, help="with --len: use the golden prompt rule")
    ap.add_argument("--len", type=int, help="prompt length for the golden prompt rule (case index 0)")
    ap.add_argument("--greedy", type=int, default=8, help="tokens to generate")
    ap.add_argument("--top", type=int, default=5, help="print the top-N logits of each row")
    a = ap.parse_args(argv)
    m = load_checkpoint(a.model)
    if a.ids:
        prompt = [int(s) for s in a.ids.split(",") if s.strip()]
    elif a.len:
        prompt = prompt_ids(a.seed, 0, a.len, m.V)
    else:
        ap.error("give --ids or --len")
    gen, rows = greedy(m, prompt, a.greedy)
    print(f"prompt ({len(prompt)} ids): {prompt[:16]}{' ...' if len(prompt) > 16 else ''}")
    print(f"greedy: {gen}")
    for i, r in enumerate(rows):
        v, ix = torch.topk(r, min(a.top, m.V))
        print(f"row {i}: " + " ".join(f"{int(j)}:{float(x):.6f}" for j, x in zip(ix, v)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
