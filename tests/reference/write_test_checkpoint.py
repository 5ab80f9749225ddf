#!/usr/bin/python3
"""Write a small random MiniMax-M1 checkpoint in the real hub layout (spec section 2).

  config.json                              original MiniMax-M1 key names
  model.safetensors.index.json             {"metadata": {"total_size": N}, "weight_map": {name: shard}}
  model-0000K-of-0000N.safetensors         zero-based shard numbers; BF16 weights, F32 routers

Only numpy is needed.  Example:
  /usr/bin/python3 tests/reference/write_test_checkpoint.py --out /tmp/tiny --seed 1
"""

import argparse
import json
import math
import os
import sys

import numpy as np

DTYPE_NAMES = {"bf16": "BF16", "f16": "F16", "f32": "F32"}


def to_bytes(a, dt):
    """a: float32 numpy array; dt: 'bf16'|'f16'|'f32'. Little-endian raw bytes."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if dt == "f32":
        return a.astype("<f4").tobytes()
    if dt == "f16":
        return a.astype("<f2").tobytes()
    if dt == "bf16":  # round to nearest even
        u = a.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype("<u2")
        return r.tobytes()
    raise ValueError(dt)


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 array, dtype key). Header padded with spaces to a multiple of 8."""
    hdr = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name, a, dt in tensors:
        b = to_bytes(a, dt)
        hdr[name] = {"dtype": DTYPE_NAMES[dt], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)
    return off


def make_config(a):
    L = a.layers
    types = [1 if (l % 8 == 7) else 0 for l in range(L)] if a.types is None else a.types
    alpha = (2.0 * L) ** 0.25
    return {
        "architectures": ["MiniMaxM1ForCausalLM"],
        "attention_dropout": 0.0,
        "attn_type_list": types,
        "bos_token_id": None,
        "eos_token_id": None,
        "head_dim": a.head_dim,
        "hidden_act": "silu",
        "hidden_size": a.hidden,
        "initializer_range": 0.02,
        "intermediate_size": a.intermediate,
        "layernorm_full_attention_alpha": alpha,
        "layernorm_full_attention_beta": 1.0,
        "layernorm_linear_attention_alpha": alpha,
        "layernorm_linear_attention_beta": 1.0,
        "layernorm_mlp_alpha": alpha,
        "layernorm_mlp_beta": 1.0,
        "max_position_embeddings": 10240000,
        "model_type": "minimax_m1",
        "num_attention_heads": a.heads,
        "num_experts_per_tok": a.topk,
        "num_hidden_layers": L,
        "num_key_value_heads": a.kv_heads,
        "num_local_experts": a.experts,
        "output_router_logits": False,
        "postnorm": True,
        "rms_norm_eps": 1e-05,
        "rope_theta": a.rope_theta,
        "rotary_dim": a.rotary_dim,
        "router_aux_loss_coef": 0.001,
        "router_jitter_noise": 0.0,
        "shared_intermediate_size": 0,
        "shared_moe_mode": "sigmoid",
        "sliding_window": None,
        "tie_word_embeddings": bool(a.tie),
        "transformers_version": "4.45.2",
        "use_cache": True,
        "vocab_size": a.vocab,
    }


def make_tensors(cfg, rng, wdt):
    """Ordered list of (name, float32 array, dtype, shard-group key)."""
    hd, H, KV, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    I, E, V = cfg["intermediate_size"], cfg["num_local_experts"], cfg["vocab_size"]

    def lin(out, inp, scale=1.0):
        return (rng.standard_normal((out, inp)) * (scale / math.sqrt(inp))).astype(np.float32)

    def normw(n):
        return (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32)

    t = [("model.embed_tokens.weight", rng.standard_normal((V, hd)).astype(np.float32), wdt, "embed")]
    for l, ty in enumerate(cfg["attn_type_list"]):
        p = f"model.layers.{l}."
        t.append((p + "input_layernorm.weight", normw(hd), wdt, l))
        if ty == 0:
            t.append((p + "self_attn.qkv_proj.weight", lin(3 * H * d, hd), wdt, l))
            t.append((p + "self_attn.output_gate.weight", lin(H * d, hd), wdt, l))
            t.append((p + "self_attn.norm.weight", normw(H * d), wdt, l))
            t.append((p + "self_attn.out_proj.weight", lin(hd, H * d), wdt, l))
        else:
            t.append((p + "self_attn.q_proj.weight", lin(H * d, hd), wdt, l))
            t.append((p + "self_attn.k_proj.weight", lin(KV * d, hd), wdt, l))
            t.append((p + "self_attn.v_proj.weight", lin(KV * d, hd), wdt, l))
            t.append((p + "self_attn.o_proj.weight", lin(hd, H * d), wdt, l))
        t.append((p + "post_attention_layernorm.weight", normw(hd), wdt, l))
        t.append((p + "block_sparse_moe.gate.weight", lin(E, hd, 2.0), "f32", l))  # routers stay fp32
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            t.append((q + "w1.weight", lin(I, hd), wdt, l))
            t.append((q + "w2.weight", lin(hd, I), wdt, l))
            t.append((q + "w3.weight", lin(I, hd), wdt, l))
    t.append(("model.norm.weight", normw(hd), wdt, "final"))
    if not cfg["tie_word_embeddings"]:
        t.append(("lm_head.weight", lin(V, hd, 2.0), wdt, "final"))
    return t


def write_checkpoint(out, cfg, seed=0, nshards=3, wdt="bf16"):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = make_tensors(cfg, rng, wdt)
    # shard 0: embedding; shards 1..n-1: layers round-robin; the final norm + lm_head go with shard 1
    groups = [[] for _ in range(nshards)]
    for name, a, dt, key in tensors:
        if nshards == 1 or key == "embed":
            s = 0
        elif key == "final":
            s = 1
        else:
            s = 1 + key % (nshards - 1)
        groups[s].append((name, a, dt))
    wm, total = {}, 0
    for s, g in enumerate(groups):
        fn = f"model-{s:05d}-of-{nshards:05d}.safetensors"
        total += write_safetensors(os.path.join(out, fn), g)
        for name, _, _ in g:
            wm[name] = fn
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": wm}, f, indent=2)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--rotary-dim", type=int, default=16)
    ap.add_argument("--rope-theta", type=float, default=10000000.0)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--topk", type=int, default=2)
    ap.add_argument("--intermediate", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--types", type=lambda s: [int(x) for x in s.split(",")], default=None,
                    help="attn_type_list, comma separated (default: l %% 8 == 7 -> softmax)")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--dtype", choices=sorted(DTYPE_NAMES), default="bf16", help="dtype of all non-router weights")
    ap.add_argument("--tie", action="store_true", help="tie_word_embeddings (no lm_head.weight)")
    a = ap.parse_args(argv)
    if a.rope_theta == int(a.rope_theta):
        a.rope_theta = int(a.rope_theta)
    cfg = make_config(a)
    if len(cfg["attn_type_list"]) != a.layers:
        ap.error("--types must have --layers entries")
    write_checkpoint(a.out, cfg, a.seed, a.shards, a.dtype)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
