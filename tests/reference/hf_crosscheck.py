#!/usr/bin/env python3
"""Cross-check tests/reference/minimax_ref.py against Hugging Face transformers' native MiniMax model.

  python3 tests/reference/hf_crosscheck.py --model DIR [--out FILE] [--dtype float64|float32] [--device cpu|cuda]

Needs torch + transformers >= 5 (native `MiniMaxForCausalLM`; written against 5.17.0) and, optionally, the
`safetensors` package (used so the HF side reads the checkpoint with a parser independent of minimax_ref's).
No network access is needed.

What it does (spec sections 2.3, 3.8, 10.1):
  1. converts config.json (original MiniMax-M1 keys) into a native `MiniMaxConfig`
     (layer_types, *_factor, rope_parameters, block_size 256, head_dim ...) and checks every resulting
     module attribute against the original config (alpha/beta per layer, layer classes, eps);
  2. remaps the weights (block_sparse_moe -> mlp; experts w1|w3 -> mlp.experts.gate_up_proj [E, 2I, hidden],
     w2 -> mlp.experts.down_proj [E, hidden, I]) and verifies names and shapes against the instantiated
     model's parameters, failing on any missing / unexpected / mis-shaped tensor;
  3. patches HF where it is known to differ from MiniMax-M1 (each patch is printed and verified to be hit):
       a. partial NeoX RoPE on the first rotary_dim dims, omega_c = fp32(theta^(-2c/rotary_dim)),
          angle = fp32(fp32(p) * omega_c), cos/sin in the model dtype;
       b. lightning decay buffers recomputed from the spec's fp32 lambda (slope ladder in double -> fp32,
          times the fp32 layer factor 1 - l/(L-1) + 1e-5, lambda = exp(-s) rounded to fp32), stored in the
          model dtype as slope' = -log(lambda) so that HF's exp(-slope' * n) tables equal lambda^n;
       c. the linear-attention cache follows the model dtype (float64/float32, never bf16);
       d. *_factor config keys supplied (step 1);
       plus, for --dtype float64 only, precision patches so that nothing is silently rounded to fp32:
       RMSNorm, eager-attention softmax and the router softmax compute in the input dtype;
  4. runs prompts of length 1, 255, 257, 600 (the golden prompt rule, seed --seed) through both
     implementations, compares all-position logits and per-layer hidden states (relative L2), runs 8 greedy
     steps on both (HF through its own prefill + cached decode path) and compares tokens and logits rows.

Prints e.g. `HF-vs-reference max relative L2 = 3.2e-13 over 4 prompts; greedy agree 4/4` and writes JSON.
Exit status 0 when everything is within tolerance, 1 when a comparison fails, 2 on a setup error.
"""

import argparse
import json
import math
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

LENGTHS = [1, 255, 257, 600]
STEPS = 8
TOL = {"float64": 1e-9, "float32": 2e-4}


class SetupError(Exception):
    pass


def say(msg):
    print(msg, flush=True)


# ----------------------------------------------------------------------------------------------
# pure helpers (importable without transformers; unit-tested by test_hf_crosscheck.py)
# ----------------------------------------------------------------------------------------------

def hf_config_kwargs(cfg):
    """Original MiniMax-M1 config.json dict -> kwargs for transformers' native MiniMaxConfig."""
    need = ["hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "intermediate_size",
            "num_local_experts", "num_experts_per_tok", "attn_type_list"]
    miss = [k for k in need if k not in cfg]
    if miss:
        raise SetupError(f"config.json lacks {miss}")
    L = int(cfg["num_hidden_layers"])
    types = [int(t) for t in cfg["attn_type_list"]]
    if len(types) != L or any(t not in (0, 1) for t in types):
        raise SetupError(f"attn_type_list must be {L} entries of 0/1, got {types}")
    H = int(cfg["num_attention_heads"])
    d = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // H)
    rd = int(cfg.get("rotary_dim") or d)
    theta = float(cfg.get("rope_theta", 10000.0))
    if cfg.get("postnorm", True) is not True:
        raise SetupError("postnorm=false checkpoints are not MiniMax-M1 (HF hard-wires postnorm)")
    if int(cfg.get("shared_intermediate_size", 0) or 0) != 0:
        raise SetupError("shared_intermediate_size > 0 is not supported by HF native MiniMax")
    kw = dict(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        intermediate_size=int(cfg["intermediate_size"]),
        num_hidden_layers=L,
        num_attention_heads=H,
        num_key_value_heads=int(cfg.get("num_key_value_heads", H)),
        head_dim=d,
        hidden_act=cfg.get("hidden_act", "silu"),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 4096)),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        num_experts_per_tok=int(cfg["num_experts_per_tok"]),
        num_local_experts=int(cfg["num_local_experts"]),
        layer_types=["linear_attention" if t == 0 else "full_attention" for t in types],
        block_size=256,
        full_attn_alpha_factor=float(cfg.get("layernorm_full_attention_alpha", 1.0)),
        full_attn_beta_factor=float(cfg.get("layernorm_full_attention_beta", 1.0)),
        linear_attn_alpha_factor=float(cfg.get("layernorm_linear_attention_alpha", 1.0)),
        linear_attn_beta_factor=float(cfg.get("layernorm_linear_attention_beta", 1.0)),
        mlp_alpha_factor=float(cfg.get("layernorm_mlp_alpha", 1.0)),
        mlp_beta_factor=float(cfg.get("layernorm_mlp_beta", 1.0)),
        rope_parameters={"rope_type": "default", "rope_theta": theta, "partial_rotary_factor": rd / d},
        sliding_window=None,
        attention_dropout=0.0,
        output_router_logits=False,
        router_jitter_noise=0.0,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        use_cache=True,
    )
    return kw, {"rotary_dim": rd, "head_dim": d, "rope_theta": theta, "types": types}


def convert_weights(cfg, tensors):
    """Original hub names -> HF-native names.  tensors: name -> torch tensor (any float dtype).

    Returns dict hf_name -> tensor.  Raises SetupError on a missing or unexpected original tensor.
    """
    import torch

    L = int(cfg["num_hidden_layers"])
    E = int(cfg["num_local_experts"])
    out = {}
    used = set()

    def take(name):
        if name not in tensors:
            raise SetupError(f"checkpoint lacks tensor {name}")
        used.add(name)
        return tensors[name]

    out["model.embed_tokens.weight"] = take("model.embed_tokens.weight")
    out["model.norm.weight"] = take("model.norm.weight")
    if "lm_head.weight" in tensors:
        out["lm_head.weight"] = take("lm_head.weight")
    elif cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    else:
        raise SetupError("lm_head.weight missing and tie_word_embeddings is false")
    for l, t in enumerate(cfg["attn_type_list"]):
        p = f"model.layers.{l}."
        for n in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            out[p + n] = take(p + n)
        names = (["qkv_proj", "output_gate", "norm", "out_proj"] if int(t) == 0
                 else ["q_proj", "k_proj", "v_proj", "o_proj"])
        for n in names:
            out[p + f"self_attn.{n}.weight"] = take(p + f"self_attn.{n}.weight")
        out[p + "mlp.gate.weight"] = take(p + "block_sparse_moe.gate.weight")
        e = p + "block_sparse_moe.experts."
        w1 = torch.stack([take(e + f"{i}.w1.weight") for i in range(E)], 0)  # [E, I, hidden]
        w3 = torch.stack([take(e + f"{i}.w3.weight") for i in range(E)], 0)
        w2 = torch.stack([take(e + f"{i}.w2.weight") for i in range(E)], 0)  # [E, hidden, I]
        out[p + "mlp.experts.gate_up_proj"] = torch.cat([w1, w3], dim=1)  # rows: w1 (gate) first, then w3 (up)
        out[p + "mlp.experts.down_proj"] = w2
    extra = [n for n in tensors if n not in used and not n.endswith("rotary_emb.inv_freq")]
    if extra:
        raise SetupError(f"checkpoint has {len(extra)} tensors the conversion does not use, e.g. {extra[:5]}")
    if L != len(cfg["attn_type_list"]):
        raise SetupError("attn_type_list length != num_hidden_layers")
    return out


def check_against_model(converted, expected):
    """expected: hf_name -> shape (from the instantiated model's parameters). Raises SetupError on mismatch."""
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    bad = [(n, list(converted[n].shape), list(expected[n])) for n in sorted(set(expected) & set(converted))
           if list(converted[n].shape) != list(expected[n])]
    msg = []
    if missing:
        msg.append(f"{len(missing)} model parameters have no converted tensor, e.g. {missing[:6]}")
    if unexpected:
        msg.append(f"{len(unexpected)} converted tensors are not model parameters, e.g. {unexpected[:6]}")
    if bad:
        msg.append(f"{len(bad)} shape mismatches (name, converted, model), e.g. {bad[:6]}")
    if msg:
        raise SetupError("weight remap does not fit the instantiated HF model:\n  " + "\n  ".join(msg))


def spec_lambda_fp32(H, l, L):
    """Spec 3.3.2 decay lambda_{l,j} as float64 values of fp32 numbers (computed here independently)."""
    import torch

    lg = math.log2(H)
    if lg != int(lg):
        raise SetupError(f"num_attention_heads={H} is not a power of two; slopes undefined")
    start = 2.0 ** (-(2.0 ** -(lg - 3)))
    s = torch.tensor([start ** (j + 1) for j in range(H)], dtype=torch.float64).float()
    factor = torch.tensor(1.0 - (l / (L - 1) if L > 1 else 0.0) + 1e-5, dtype=torch.float64).float()
    rate = (s * factor).float()  # fp32 product
    # exp(-rate) rounded to fp32 (correctly rounded: double exp, then fp32), as minimax_ref defines it
    return (-rate.double()).exp().float().double()


def rel_l2(a, b):
    import torch

    a = a.double().cpu()
    b = b.double().cpu()
    den = torch.linalg.norm(b).item()
    num = torch.linalg.norm(a - b).item()
    return num / den if den > 0 else num


# ----------------------------------------------------------------------------------------------
# HF side
# ----------------------------------------------------------------------------------------------

def load_tensors_independently(d):
    """Read the shards with the `safetensors` package when available (independent of minimax_ref's parser)."""
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        wm = json.load(f)["weight_map"]
    try:
        from safetensors.torch import load_file
    except Exception as e:  # pragma: no cover
        say(f"[load] safetensors package unavailable ({e}); using minimax_ref's parser for the HF side")
        import minimax_ref as R

        t = {}
        for fn in sorted(set(wm.values())):
            t.update(R.read_safetensors(os.path.join(d, fn)))
        return t, "minimax_ref parser"
    t = {}
    for fn in sorted(set(wm.values())):
        part = load_file(os.path.join(d, fn))
        for n, v in part.items():
            if wm.get(n) != fn:
                raise SetupError(f"{fn} holds {n} but the index maps it to {wm.get(n)}")
            t[n] = v
    missing = set(wm) - set(t)
    if missing:
        raise SetupError(f"index lists tensors not found in the shards, e.g. {sorted(missing)[:5]}")
    return t, "safetensors package"


class Patches:
    """Monkeypatches on transformers.models.minimax.modeling_minimax; counts calls so we can prove they ran."""

    def __init__(self, mm, torch, rotary_dim, head_dim, theta, dtype, precision):
        self.mm, self.torch = mm, torch
        self.rd, self.d, self.theta = rotary_dim, head_dim, theta
        self.dtype, self.precision = dtype, precision
        self.calls = {}
        self.log = []
        self.saved = []

    def _count(self, k):
        self.calls[k] = self.calls.get(k, 0) + 1

    def _set(self, owner, name, value, what):
        if not hasattr(owner, name):
            raise SetupError(f"cannot patch {what}: {owner!r} has no attribute {name!r} "
                             f"(transformers layout changed; see spec 3.8 and adapt hf_crosscheck.py)")
        self.saved.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)
        self.log.append(what)
        say(f"[patch] {what}")

    def apply_module_patches(self):
        mm, torch = self.mm, self.torch
        rd = self.rd
        P = self
        orig_rotate_half = mm.rotate_half

        def apply_rotary_pos_emb_partial(q, k, cos, sin, unsqueeze_dim=1):
            P._count("rope")
            if cos.shape[-1] != rd:
                raise RuntimeError(f"patched rope got cos of width {cos.shape[-1]}, expected rotary_dim={rd}")
            cos = cos.unsqueeze(unsqueeze_dim)
            sin = sin.unsqueeze(unsqueeze_dim)
            q_rot, q_pass = q[..., :rd], q[..., rd:]
            k_rot, k_pass = k[..., :rd], k[..., rd:]
            q_embed = torch.cat([q_rot * cos + orig_rotate_half(q_rot) * sin, q_pass], dim=-1)
            k_embed = torch.cat([k_rot * cos + orig_rotate_half(k_rot) * sin, k_pass], dim=-1)
            return q_embed, k_embed

        if "rope" in getattr(self, "skip", ()):
            say("[patch] (a) SKIPPED on request (--skip-patch rope): HF rotates all head_dim dims")
            return self._precision_patches()
        self._set(mm, "apply_rotary_pos_emb", apply_rotary_pos_emb_partial,
                  f"(a) modeling_minimax.apply_rotary_pos_emb -> partial NeoX rope on dims [0, {rd}) only")

        def rotary_forward(module, x, position_ids):
            P._count("rotary_emb")
            inv = module.inv_freq.to(device=x.device, dtype=torch.float32)
            pos = position_ids.to(torch.float32)  # [B, T]
            freqs = (pos[:, :, None] * inv[None, None, :]).to(torch.float32)  # fp32 product, rounded to fp32
            emb = torch.cat((freqs, freqs), dim=-1).to(P.dtype)
            return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

        self._set(mm.MiniMaxRotaryEmbedding, "forward", rotary_forward,
                  "(a) MiniMaxRotaryEmbedding.forward -> angle fp32(fp32(p)*fp32(omega)), cos/sin in model dtype, "
                  f"width rotary_dim={rd}")
        self._precision_patches()

    def _precision_patches(self):
        mm, torch = self.mm, self.torch
        P = self
        if self.precision:
            def rms_forward(module, hidden_states):
                P._count("rmsnorm")
                dt = hidden_states.dtype
                work = torch.promote_types(dt, torch.float32)
                h = hidden_states.to(work)
                var = h.pow(2).mean(-1, keepdim=True)
                h = h * torch.rsqrt(var + module.variance_epsilon)
                return module.weight * h.to(dt)

            self._set(mm.MiniMaxRMSNorm, "forward", rms_forward,
                      "(precision) MiniMaxRMSNorm.forward computes in max(input dtype, fp32) instead of fp32")

            orig_eager = mm.eager_attention_forward

            def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kw):
                P._count("eager_attention")
                key_states = mm.repeat_kv(key, module.num_key_value_groups)
                value_states = mm.repeat_kv(value, module.num_key_value_groups)
                w = torch.matmul(query, key_states.transpose(2, 3)) * scaling
                if attention_mask is not None:
                    if attention_mask.dtype == torch.bool:
                        w = w.masked_fill(~attention_mask, float("-inf"))
                    else:
                        w = w + attention_mask.to(w.dtype)
                w = torch.nn.functional.softmax(w, dim=-1, dtype=query.dtype)
                out = torch.matmul(w, value_states).transpose(1, 2).contiguous()
                return out, w

            eager_attention_forward.__wrapped_original__ = orig_eager
            self._set(mm, "eager_attention_forward", eager_attention_forward,
                      "(precision) modeling_minimax.eager_attention_forward: softmax in the query dtype (HF: fp32)")

            def router_forward(module, hidden_states):
                P._count("router")
                hidden_states = hidden_states.reshape(-1, module.hidden_dim)
                logits = torch.nn.functional.linear(hidden_states, module.weight)
                probs = torch.softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
                top_v, top_i = torch.topk(probs, module.top_k, dim=-1)
                top_v = top_v / top_v.sum(dim=-1, keepdim=True)
                return logits, top_v, top_i

            self._set(mm.MiniMaxTopKRouter, "forward", router_forward,
                      "(precision) MiniMaxTopKRouter.forward: softmax/top-k/renorm in the logits dtype (HF: fp32)")

    def undo(self):
        for owner, name, val in reversed(self.saved):
            setattr(owner, name, val)


def fix_model_buffers(model, mm, torch, meta, cfg, dtype):
    """Patch (a) inv_freq and (b) lightning decay buffers on the instantiated model."""
    rd, theta = meta["rotary_dim"], meta["rope_theta"]
    re = model.model.rotary_emb
    skip = getattr(model, "_crosscheck_skip", set())
    if "rope" in skip:
        rd = meta["head_dim"]  # leave HF's full-width rope (skip diagnostic)
    inv = torch.tensor([theta ** (-2.0 * c / rd) for c in range(rd // 2)], dtype=torch.float64).float()
    old = getattr(re, "inv_freq", None)
    say(f"[patch] (a) rotary_emb.inv_freq: {tuple(old.shape) if old is not None else None} entries "
        f"-> {rd // 2} entries fp32(theta^(-2c/{rd}))")
    re.inv_freq = inv.to(old.device if old is not None else "cpu")
    if hasattr(re, "original_inv_freq"):
        re.original_inv_freq = re.inv_freq.clone()

    L = int(cfg["num_hidden_layers"])
    H = int(cfg["num_attention_heads"])
    n = 0
    worst = 0.0
    for l, layer in enumerate(model.model.layers):
        att = layer.self_attn
        if meta["types"][l] != 0:
            if isinstance(att, mm.MiniMaxLightningAttention):
                raise SetupError(f"layer {l} is softmax in attn_type_list but HF built a lightning module")
            continue
        if not isinstance(att, mm.MiniMaxLightningAttention):
            raise SetupError(f"layer {l} is lightning in attn_type_list but HF built {type(att).__name__}")
        if att.layer_idx != l:
            raise SetupError(f"layer {l}: HF lightning module has layer_idx {att.layer_idx}")
        for b in ("slope_rate", "query_decay", "key_decay", "diagonal_decay"):
            if not hasattr(att, b):
                raise SetupError(f"HF MiniMaxLightningAttention lacks buffer {b}; adapt patch (b)")
        lam = spec_lambda_fp32(H, l, L)
        slope = (-torch.log(lam)).to(dtype)[:, None, None]  # exp(-slope * n) == lam^n in the model dtype
        if "decay" in skip:  # diagnostic: HF's own slopes, denominator L-1+1e-5, tables exp(-s n)
            slope = att.get_slope_rate().to(torch.float32).to(dtype)
        dev = att.slope_rate.device
        old_lam = torch.exp(-att.slope_rate.double().flatten().cpu())
        worst = max(worst, ((old_lam - lam).abs() / lam).max().item())
        qd, kd, dd = att.decay_factors(slope)
        for name, new in (("slope_rate", slope), ("query_decay", qd), ("key_decay", kd), ("diagonal_decay", dd)):
            cur = getattr(att, name)
            if tuple(cur.shape) != tuple(new.shape):
                raise SetupError(f"layer {l} {name}: recomputed shape {tuple(new.shape)} != buffer {tuple(cur.shape)}")
            att._buffers[name] = new.to(device=dev, dtype=dtype)
        n += 1
    say(f"[patch] (b) recomputed slope_rate/query_decay/key_decay/diagonal_decay of {n} lightning layers in "
        f"{dtype} from the spec's fp32 lambda (HF's own lambdas differed by up to {worst:.2e} relative: "
        f"denominator L-1+1e-5 and/or buffer dtype)")


def verify_model_structure(model, mm, cfg, kw):
    L = int(cfg["num_hidden_layers"])
    if len(model.model.layers) != L:
        raise SetupError(f"HF model has {len(model.model.layers)} layers, config says {L}")
    for l, layer in enumerate(model.model.layers):
        lin = kw["layer_types"][l] == "linear_attention"
        exp_a = (kw["linear_attn_alpha_factor"], kw["linear_attn_beta_factor"]) if lin else \
            (kw["full_attn_alpha_factor"], kw["full_attn_beta_factor"])
        got_a = (float(layer.attn_alpha_factor), float(layer.attn_beta_factor))
        got_m = (float(layer.mlp_alpha_factor), float(layer.mlp_beta_factor))
        if got_a != exp_a or got_m != (kw["mlp_alpha_factor"], kw["mlp_beta_factor"]):
            raise SetupError(f"layer {l}: HF alpha/beta {got_a} {got_m} != config {exp_a} "
                             f"{(kw['mlp_alpha_factor'], kw['mlp_beta_factor'])} -- the *_factor keys did not take")
        for nm in ("input_layernorm", "post_attention_layernorm"):
            eps = getattr(layer, nm).variance_epsilon
            if abs(eps - kw["rms_norm_eps"]) > 1e-15:
                raise SetupError(f"layer {l} {nm} eps {eps} != rms_norm_eps {kw['rms_norm_eps']}")
        if lin and abs(layer.self_attn.norm.variance_epsilon - 1e-6) > 1e-15:
            raise SetupError(f"layer {l}: lightning output norm eps {layer.self_attn.norm.variance_epsilon} != 1e-6")
    say(f"[check] {L} layers: layer classes, alpha/beta factors, norm eps as in config.json")


def build_hf_model(args, cfg, dtype, device):
    try:
        import torch
        import transformers
        from transformers.models.minimax import modeling_minimax as mm
        from transformers.models.minimax import MiniMaxConfig, MiniMaxForCausalLM
    except Exception as e:
        raise SetupError(f"cannot import transformers' native MiniMax (need transformers >= 5 with "
                         f"transformers.models.minimax): {type(e).__name__}: {e}")
    say(f"[env] transformers {transformers.__version__}, torch {torch.__version__}, "
        f"modeling file {mm.__file__}")
    kw, meta = hf_config_kwargs(cfg)
    try:
        hcfg = MiniMaxConfig(**kw)
    except Exception as e:
        raise SetupError(f"MiniMaxConfig(**{sorted(kw)}) failed: {type(e).__name__}: {e}")
    for k in ("full_attn_alpha_factor", "linear_attn_alpha_factor", "mlp_alpha_factor", "block_size", "head_dim"):
        if getattr(hcfg, k, None) != kw[k]:
            raise SetupError(f"MiniMaxConfig.{k} = {getattr(hcfg, k, None)} but we passed {kw[k]}")
    if list(hcfg.layer_types) != kw["layer_types"]:
        raise SetupError("MiniMaxConfig.layer_types differs from what we passed")
    rp = getattr(hcfg, "rope_parameters", None) or {}
    if float(rp.get("rope_theta", -1)) != meta["rope_theta"]:
        raise SetupError(f"MiniMaxConfig.rope_parameters = {rp}, expected rope_theta {meta['rope_theta']}")
    say(f"[config] MiniMaxConfig: layer_types={kw['layer_types']}, factors "
        f"la=({kw['linear_attn_alpha_factor']:.6g},{kw['linear_attn_beta_factor']}) "
        f"fa=({kw['full_attn_alpha_factor']:.6g},{kw['full_attn_beta_factor']}) "
        f"mlp=({kw['mlp_alpha_factor']:.6g},{kw['mlp_beta_factor']}), rope_parameters={rp}")

    patches = Patches(mm, torch, meta["rotary_dim"], meta["head_dim"], meta["rope_theta"], dtype,
                      precision=(dtype == torch.float64))
    patches.skip = set(args.skip_patch)
    patches.apply_module_patches()

    # instantiate in the target dtype with eager attention (and eager experts if that switch exists)
    prev = torch.get_default_dtype()
    model = None
    errors = []
    attempts = [dict(attn_implementation="eager", experts_implementation="eager", dtype=dtype),
                dict(attn_implementation="eager", dtype=dtype),
                dict(attn_implementation="eager", torch_dtype=dtype),
                dict(attn_implementation="eager")]
    for extra in attempts:
        try:
            model = MiniMaxForCausalLM._from_config(hcfg, **extra)
            say(f"[build] MiniMaxForCausalLM._from_config(config, {', '.join(f'{k}={v}' for k, v in extra.items())})")
            break
        except Exception as e:
            errors.append(f"{extra}: {type(e).__name__}: {e}")
    if model is None:
        try:
            torch.set_default_dtype(dtype)
            hcfg._attn_implementation = "eager"
            model = MiniMaxForCausalLM(hcfg)
            say("[build] MiniMaxForCausalLM(config) with default dtype set")
        except Exception as e:
            errors.append(f"plain constructor: {type(e).__name__}: {e}")
            raise SetupError("could not instantiate MiniMaxForCausalLM:\n  " + "\n  ".join(errors))
        finally:
            torch.set_default_dtype(prev)
    model = model.to(dtype=dtype, device=device).eval()
    impl = getattr(model.config, "_attn_implementation", None)
    if impl != "eager":
        raise SetupError(f"attention implementation is {impl!r}, expected 'eager'")
    say(f"[build] attn implementation {impl!r}, experts implementation "
        f"{getattr(model.config, '_experts_implementation', '(no such switch)')!r}")

    verify_model_structure(model, mm, cfg, kw)

    # weights
    tensors, how = load_tensors_independently(args.model)
    say(f"[load] {len(tensors)} tensors read with the {how}")
    conv = convert_weights(cfg, tensors)
    params = dict(model.named_parameters(remove_duplicate=False))
    check_against_model(conv, {n: tuple(p.shape) for n, p in params.items()})
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(conv[n].to(device=device, dtype=dtype))
    # also verify the result through state_dict (catches tying surprises)
    sd = model.state_dict()
    for n, t in conv.items():
        if not torch.equal(sd[n].cpu(), t.to(dtype)):
            raise SetupError(f"after loading, state_dict[{n}] differs from the converted tensor (tied weights?)")
    say(f"[load] {len(params)} parameters loaded and verified (names + shapes + values)")
    model._crosscheck_skip = set(args.skip_patch)
    fix_model_buffers(model, mm, torch, meta, cfg, dtype)
    say("[patch] (c) linear-attention cache: created by HF as zeros(...).to(value_states) -> "
        f"{dtype} (model dtype), checked after prefill")
    say("[patch] (d) *_factor / layer_types / rope_parameters / block_size supplied in MiniMaxConfig (above)")
    return model, patches, mm


def hf_logits_and_hidden(model, ids, torch, device):
    hidden = {}
    hooks = []

    def mk(i):
        def hook(mod, inp, out):
            hidden[i] = (out[0] if isinstance(out, (tuple, list)) else out).detach()
        return hook

    for i, layer in enumerate(model.model.layers):
        hooks.append(layer.register_forward_hook(mk(i)))
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids], device=device), use_cache=False)
    finally:
        for h in hooks:
            h.remove()
    return out.logits[0], [hidden[i][0] for i in range(len(model.model.layers))]


def hf_greedy_cached(model, mm, prompt, n, torch, device, dtype):
    """Prefill with a cache, then n single-token decode steps (HF's recurrent path). Returns (ids, rows)."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
        cache = out.past_key_values
        if cache is None:
            raise RuntimeError("HF returned no cache")
        lc = [c for c in getattr(cache, "linear_cache", []) if isinstance(c, torch.Tensor)]
        if not lc:
            raise RuntimeError("cache holds no linear-attention state")
        if any(c.dtype != dtype for c in lc):
            raise RuntimeError(f"linear cache dtype {lc[0].dtype} != model dtype {dtype} (patch c violated)")
        rows = [out.logits[0, -1]]
        gen = []
        pos = len(prompt)
        for _ in range(n):
            t = int(torch.argmax(rows[-1]).item())
            gen.append(t)
            out = model(input_ids=torch.tensor([[t]], device=device), past_key_values=cache, use_cache=True,
                        position_ids=torch.tensor([[pos]], device=device))
            cache = out.past_key_values
            rows.append(out.logits[0, -1])
            pos += 1
    return gen, torch.stack(rows)


def hf_greedy_recompute(model, prompt, n, torch, device):
    seq = list(prompt)
    rows, gen = [], []
    with torch.no_grad():
        for i in range(n + 1):
            lg = model(input_ids=torch.tensor([seq], device=device), use_cache=False).logits[0, -1]
            rows.append(lg)
            if i < n:
                t = int(torch.argmax(lg).item())
                gen.append(t)
                seq.append(t)
    return gen, torch.stack(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="checkpoint directory (original MiniMax-M1 layout)")
    ap.add_argument("--out", help="write a JSON report here")
    ap.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    ap.add_argument("--device", default="cpu", help="torch device for the HF model (cpu is deterministic)")
    ap.add_argument("--seed", type=int, default=0, help="prompt seed (golden prompt rule)")
    ap.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--tol", type=float, help="max relative L2 for PASS (default 1e-9 fp64, 2e-4 fp32)")
    ap.add_argument("--skip-patch", action="append", default=[], choices=["rope", "decay"],
                    help="diagnostic: leave HF's RoPE / decay buffers unpatched to see the comparison FAIL")
    a = ap.parse_args(argv)

    report = {"model": os.path.abspath(a.model), "dtype": a.dtype, "device": a.device, "seed": a.seed}
    try:
        import torch
    except Exception as e:
        say(f"ERROR: torch is not importable: {e}")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        import minimax_ref as R
    except Exception as e:
        say(f"ERROR: cannot import minimax_ref.py from {HERE}: {e}")
        return 2
    dtype = getattr(torch, a.dtype)
    tol = a.tol if a.tol is not None else TOL[a.dtype]
    lengths = [int(x) for x in a.lengths.split(",") if x]
    patches = None
    try:
        with open(os.path.join(a.model, "config.json")) as f:
            cfg = json.load(f)
        t0 = time.time()
        ref = R.load_checkpoint(a.model)
        say(f"[ref] minimax_ref loaded {len(ref.w)} tensors ({time.time() - t0:.1f}s)")
        model, patches, mm = build_hf_model(a, cfg, dtype, a.device)
    except SetupError as e:
        say(f"SETUP ERROR: {e}")
        report.update(ok=False, setup_error=str(e))
        if a.out:
            with open(a.out, "w") as f:
                json.dump(report, f, indent=1)
        return 2
    except Exception as e:
        traceback.print_exc()
        say(f"SETUP ERROR (unexpected): {type(e).__name__}: {e}")
        report.update(ok=False, setup_error=f"{type(e).__name__}: {e}")
        if a.out:
            with open(a.out, "w") as f:
                json.dump(report, f, indent=1)
        return 2

    report["patches"] = patches.log
    report["transformers"] = __import__("transformers").__version__
    report["torch"] = torch.__version__
    cases = []
    greedy_ok = 0
    max_rel = 0.0
    failed = False
    for L in lengths:
        c = R.GOLDEN_LENGTHS.index(L) if L in R.GOLDEN_LENGTHS else len(R.GOLDEN_LENGTHS) + L
        prompt = R.prompt_ids(a.seed, c, L, ref.V)
        t0 = time.time()
        ref_logits, ref_h = R.forward(ref, prompt, return_hidden=True)
        ref_gen, ref_rows = R.greedy(ref, prompt, a.steps)
        t_ref = time.time() - t0
        patches.calls.clear()
        t0 = time.time()
        hf_logits, hf_h = hf_logits_and_hidden(model, prompt, torch, a.device)
        calls = dict(patches.calls)
        n_soft = sum(1 for t in ref.types if t == 1)
        if "rope" in a.skip_patch:
            pass
        elif n_soft and calls.get("rope", 0) < n_soft:
            say(f"SETUP ERROR: the RoPE patch ran {calls.get('rope', 0)} times for {n_soft} softmax layers: "
                "HF no longer calls modeling_minimax.apply_rotary_pos_emb by module lookup; adapt patch (a)")
            return 2
        if calls.get("rotary_emb", 0) < 1 and n_soft and "rope" not in a.skip_patch:
            say("SETUP ERROR: patched MiniMaxRotaryEmbedding.forward never ran; adapt patch (a)")
            return 2
        if patches.precision and n_soft and calls.get("eager_attention", 0) < n_soft:
            say(f"SETUP ERROR: the precision patch of eager_attention_forward ran {calls.get('eager_attention', 0)} "
                f"times for {n_soft} softmax layers (is attn_implementation really eager?)")
            return 2
        mode = "prefill+cached decode"
        try:
            hf_gen, hf_rows = hf_greedy_cached(model, mm, prompt, a.steps, torch, a.device, dtype)
        except Exception as e:
            say(f"[warn] HF cached decode failed ({type(e).__name__}: {e}); using full recompute per step")
            mode = "full recompute"
            hf_gen, hf_rows = hf_greedy_recompute(model, prompt, a.steps, torch, a.device)
        t_hf = time.time() - t0
        e_all = rel_l2(hf_logits, ref_logits)
        e_last = rel_l2(hf_logits[-1], ref_logits[-1])
        e_layers = [rel_l2(hf_h[i], ref_h["hidden"][i + 1]) for i in range(ref.L)]
        e_rows = rel_l2(hf_rows, ref_rows)
        agree = hf_gen == ref_gen
        greedy_ok += agree
        worst = max(e_all, e_rows)
        max_rel = max(max_rel, worst)
        ok = worst <= tol and agree
        failed |= not ok
        say(f"len {L:4d}: logits rel L2 {e_all:.3e} (last row {e_last:.3e}); greedy rows ({mode}) rel L2 "
            f"{e_rows:.3e}; worst layer hidden rel L2 {max(e_layers):.3e} at layer {e_layers.index(max(e_layers))}; "
            f"greedy {'AGREE' if agree else 'DIFFER'} ref {ref_gen} hf {hf_gen}  [ref {t_ref:.1f}s, hf {t_hf:.1f}s]"
            f"{'' if ok else '  <-- FAIL'}")
        cases.append({"len": L, "case_index": c, "prompt_head": prompt[:8], "rel_l2_logits": e_all,
                      "rel_l2_last_row": e_last, "rel_l2_greedy_rows": e_rows, "greedy_mode": mode,
                      "rel_l2_hidden_per_layer": e_layers, "greedy_ref": ref_gen, "greedy_hf": hf_gen,
                      "greedy_agree": agree, "patch_calls": calls, "ok": ok})
    summary = (f"HF-vs-reference max relative L2 = {max_rel:.1e} over {len(cases)} prompts; "
               f"greedy agree {greedy_ok}/{len(cases)}  (dtype {a.dtype}, tolerance {tol:.0e}) -> "
               f"{'PASS' if not failed else 'FAIL'}")
    say(summary)
    report.update(ok=not failed, max_rel_l2=max_rel, greedy_agree=f"{greedy_ok}/{len(cases)}", tolerance=tol,
                  cases=cases, summary=summary)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)
        say(f"wrote {a.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
