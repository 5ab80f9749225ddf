#!/usr/bin/python3
"""Self-checks of minimax_ref.py.  Run:  /usr/bin/python3 tests/reference/test_minimax_ref.py
(also collectable by pytest where pytest exists).  Needs torch + numpy; writes into a temp directory."""

import atexit
import json
import math
import os
import shutil
import struct
import sys
import tempfile
import traceback

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import minimax_ref as R  # noqa: E402
import write_test_checkpoint as W  # noqa: E402

torch.manual_seed(0)
_TMP = tempfile.mkdtemp(prefix="minimax_ref_test_")
atexit.register(shutil.rmtree, _TMP, True)


def _ckpt(name, **over):
    """Write (once) a tiny checkpoint with write_test_checkpoint defaults overridden by `over`."""
    d = os.path.join(_TMP, name)
    if not os.path.exists(os.path.join(d, "config.json")):
        args = ["--out", d, "--seed", str(over.pop("seed", 3))]
        for k, v in over.items():
            flag = "--" + k.replace("_", "-")
            if v is True:
                args.append(flag)
            else:
                args += [flag, str(v)]
        W.main(args)
    return d


# ----------------------------------------------------------------------------------------------
# lightning attention
# ----------------------------------------------------------------------------------------------

def lightning_recurrent(q, k, v, lam):
    """Independent token-by-token recurrence: S_t = lam S_{t-1} + k_t^T v_t; o_t = q_t S_t. [T,H,d] inputs."""
    T, H, d = q.shape
    out = torch.zeros(T, H, v.shape[2], dtype=torch.float64)
    for h in range(H):
        S = torch.zeros(d, v.shape[2], dtype=torch.float64)
        for t in range(T):
            S = lam[h] * S + torch.outer(k[t, h], v[t, h])
            out[t, h] = q[t, h] @ S
    return out


def lightning_chunked(q, k, v, lam, B=256, inter_offset=1):
    """Spec 3.3.4 chunked prefill (lambda^(i+1) inter-block), as a third form. inter_offset=0: the lambda^i bug."""
    T, H, d = q.shape
    out = torch.zeros(T, H, v.shape[2], dtype=torch.float64)
    for h in range(H):
        S = torch.zeros(d, v.shape[2], dtype=torch.float64)
        lm = lam[h]
        for b0 in range(0, T, B):
            Q, K, V = q[b0:b0 + B, h], k[b0:b0 + B, h], v[b0:b0 + B, h]
            m = Q.shape[0]
            i = torch.arange(m, dtype=torch.float64)
            inter = (lm ** (i + inter_offset))[:, None] * (Q @ S)
            D = torch.where(i[:, None] >= i[None, :], lm ** (i[:, None] - i[None, :]).clamp(min=0),
                            torch.zeros((), dtype=torch.float64))
            out[b0:b0 + m, h] = inter + ((Q @ K.T) * D) @ V
            S = lm ** m * S + (K * (lm ** (m - 1 - i))[:, None]).T @ V
    return out


def test_lightning_matrix_vs_recurrence():
    T, H, d = 300, 4, 16
    q, k, v = (R.silu(torch.randn(T, H, d, dtype=torch.float64)) for _ in range(3))
    for lam in (R.lightning_decay(H, 0, 8), R.lightning_decay(H, 6, 8),
                torch.tensor([0.5, 0.9, 0.999, 0.999951], dtype=torch.float64)):
        a = R.lightning_core(q, k, v, lam)
        b = lightning_recurrent(q, k, v, lam)
        c = lightning_chunked(q, k, v, lam, B=64)
        scale = b.abs().max().item()
        e1 = (a - b).abs().max().item() / scale
        e2 = (c - b).abs().max().item() / scale
        assert e1 < 1e-12, f"matrix vs recurrence rel err {e1}"
        assert e2 < 1e-12, f"chunked vs recurrence rel err {e2}"
    # the lambda^i variant (vLLM Triton reading, spec 4.6) must be detectably different
    lam = torch.tensor([0.9, 0.99, 0.999, 0.9999], dtype=torch.float64)
    a = R.lightning_core(q, k, v, lam)
    bad = lightning_chunked(q, k, v, lam, B=64, inter_offset=0)
    assert torch.equal(a[:64], a[:64]) and (a[:64] - bad[:64]).abs().max() < 1e-12  # first block has no carry
    assert (a[64:] - bad[64:]).abs().max() / a.abs().max() > 1e-4, "test cannot see the lambda^i bug"


def test_decay_cache_slice_matches():
    lam = R.lightning_decay(4, 3, 8)
    big = R.decay_matrix(lam, 640)
    small = R.decay_matrix(lam, 257)
    assert torch.equal(big[:, :257, :257], small)
    assert small[0, 5, 6] == 0 and small[0, 6, 6] == 1


def test_slopes_match_spec_examples():
    s = R.lightning_slopes(64)
    for j in range(64):
        assert abs(s[j] - 2.0 ** (-(j + 1) / 8)) < 1e-15
    # spec 3.3.2 examples for the real model (H=64, L=80)
    lam0 = R.lightning_decay(64, 0, 80)
    lam78 = R.lightning_decay(64, 78, 80)
    s0 = R.lightning_rates(64, 0, 80).double()
    s78 = R.lightning_rates(64, 78, 80).double()
    assert abs(s0[0] - 0.917013) < 2e-6 and abs(lam0[0] - 0.39971) < 1e-5
    assert abs(s0[63] - 0.00390629) < 1e-8 and abs(lam0[63] - 0.99610) < 1e-5
    assert abs(s78[0] - 0.0116168) < 1e-7 and abs(lam78[0] - 0.98845) < 1e-5
    assert abs(s78[63] - 4.9485e-5) < 1e-9 and abs(lam78[63] - 0.999951) < 1e-6
    # values are exactly representable fp32 numbers
    assert torch.equal(lam0.to(torch.float32).to(torch.float64), lam0)
    # power-of-two requirement
    try:
        R.lightning_slopes(6)
    except ValueError:
        pass
    else:
        raise AssertionError("H=6 accepted")
    # H=4: start = 2^(-2^(1)) = 1/4, s = 1/4, 1/16, ...
    assert R.lightning_slopes(4) == [0.25, 0.0625, 0.015625, 0.00390625]


# ----------------------------------------------------------------------------------------------
# RoPE
# ----------------------------------------------------------------------------------------------

def test_rope_partial_neox():
    T, Hh, d, rd, theta = 50, 3, 32, 16, 1e7
    x = torch.randn(T, Hh, d, dtype=torch.float64)
    cos, sin = R.rope_cos_sin(list(range(T)), rd, theta)
    y = R.apply_rope(x, cos, sin, rd)
    assert torch.equal(y[..., rd:], x[..., rd:]), "dims >= rotary_dim must pass through unchanged"
    assert torch.allclose(y[0], x[0], rtol=0, atol=0), "position 0 is the identity"
    half = rd // 2
    # each pair (c, c+half) is a plain 2-D rotation by p*omega_c
    for p in (1, 7, 49):
        for c in range(half):
            om = np.float32(theta ** (-2.0 * c / rd))
            ang = float(np.float32(np.float32(p) * om))
            a, b = x[p, 1, c].item(), x[p, 1, c + half].item()
            ea = a * math.cos(ang) - b * math.sin(ang)
            eb = b * math.cos(ang) + a * math.sin(ang)
            assert abs(y[p, 1, c].item() - ea) < 1e-12 and abs(y[p, 1, c + half].item() - eb) < 1e-12
    # norm of the rotated part is preserved per pair
    n0 = x[..., :half] ** 2 + x[..., half:rd] ** 2
    n1 = y[..., :half] ** 2 + y[..., half:rd] ** 2
    assert torch.allclose(n0, n1, rtol=1e-12, atol=1e-12)


def test_rope_fp32_angle():
    # angle for a large position is the fp32-rounded product, not the exact double product
    cos, sin = R.rope_cos_sin([1000003], 64, 1e7)
    om = np.float32(1e7 ** (-2.0 * 1 / 64))
    ang = np.float32(np.float32(1000003) * om)
    assert abs(cos[0, 1].item() - math.cos(float(ang))) < 1e-15


# ----------------------------------------------------------------------------------------------
# softmax attention, MoE: compare with straightforward loops
# ----------------------------------------------------------------------------------------------

def test_softmax_attention_vs_loop():
    m = R.load_checkpoint(_ckpt("base"))
    l = m.types.index(1)
    T = 23
    h = torch.randn(T, m.hidden, dtype=torch.float64)
    got = R.softmax_attention(m, l, h)
    p = f"model.layers.{l}.self_attn."
    d, rd = m.d, m.rotary_dim
    q = h @ m.w[p + "q_proj.weight"].T
    k = h @ m.w[p + "k_proj.weight"].T
    v = h @ m.w[p + "v_proj.weight"].T

    def rot(vec, pos):
        vec = vec.clone()
        for c in range(rd // 2):
            om = np.float32(m.theta ** (-2.0 * c / rd))
            ang = float(np.float32(np.float32(pos) * om))
            a, b = vec[c].item(), vec[c + rd // 2].item()
            vec[c] = a * math.cos(ang) - b * math.sin(ang)
            vec[c + rd // 2] = b * math.cos(ang) + a * math.sin(ang)
        return vec

    out = torch.zeros(T, m.H * d, dtype=torch.float64)
    group = m.H // m.KV
    for t in range(T):
        for j in range(m.H):
            kvh = j // group
            qt = rot(q[t, j * d:(j + 1) * d], t)
            sc = []
            for i in range(t + 1):
                ki = rot(k[i, kvh * d:(kvh + 1) * d], i)
                sc.append(float(qt @ ki) / math.sqrt(d))
            mx = max(sc)
            e = [math.exp(s - mx) for s in sc]
            z = sum(e)
            for i in range(t + 1):
                out[t, j * d:(j + 1) * d] += (e[i] / z) * v[i, kvh * d:(kvh + 1) * d]
    ref = out @ m.w[p + "o_proj.weight"].T
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    assert err < 1e-12, err


def test_lightning_layer_vs_loop():
    m = R.load_checkpoint(_ckpt("base"))
    l = 2
    T = 40
    h = torch.randn(T, m.hidden, dtype=torch.float64)
    tr = {}
    got = R.lightning_attention(m, l, h, tr)
    p = f"model.layers.{l}.self_attn."
    Wqkv = m.w[p + "qkv_proj.weight"]
    d, H = m.d, m.H
    lam = m.lam[l]
    outs = torch.zeros(T, H * d, dtype=torch.float64)
    for j in range(H):
        base = 3 * d * j  # head-major interleaved rows: [q_j | k_j | v_j]
        Wq, Wk, Wv = Wqkv[base:base + d], Wqkv[base + d:base + 2 * d], Wqkv[base + 2 * d:base + 3 * d]
        S = torch.zeros(d, d, dtype=torch.float64)
        for t in range(T):
            qt, kt, vt = R.silu(Wq @ h[t]), R.silu(Wk @ h[t]), R.silu(Wv @ h[t])
            S = lam[j] * S + torch.outer(kt, vt)
            outs[t, j * d:(j + 1) * d] = qt @ S
    z = m.w[p + "norm.weight"] * outs / torch.sqrt((outs ** 2).mean(-1, keepdim=True) + 1e-6)
    gate = 1 / (1 + torch.exp(-(h @ m.w[p + "output_gate.weight"].T)))
    ref = (gate * z) @ m.w[p + "out_proj.weight"].T
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    assert err < 1e-12, err


def test_moe_vs_loop_and_ties():
    m = R.load_checkpoint(_ckpt("base"))
    l = 1
    T = 17
    g = torch.randn(T, m.hidden, dtype=torch.float64)
    got = R.moe(m, l, g)
    p = f"model.layers.{l}.block_sparse_moe."
    ref = torch.zeros_like(g)
    for t in range(T):
        lg = (m.w[p + "gate.weight"] @ g[t]).tolist()
        mx = max(lg)
        pr = [math.exp(x - mx) for x in lg]
        z = sum(pr)
        pr = [x / z for x in pr]
        order = sorted(range(m.E), key=lambda e: (-pr[e], e))[:m.topk]
        tot = sum(pr[e] for e in order)
        for e in order:
            q = p + f"experts.{e}."
            a = m.w[q + "w1.weight"] @ g[t]
            b = m.w[q + "w3.weight"] @ g[t]
            ref[t] += (pr[e] / tot) * (m.w[q + "w2.weight"] @ (a * torch.sigmoid(a) * b))
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    assert err < 1e-12, err
    # ties -> lower index
    pt = torch.tensor([[0.1, 0.3, 0.3, 0.3], [0.25, 0.25, 0.25, 0.25], [0.4, 0.1, 0.4, 0.1]], dtype=torch.float64)
    idx, val = R.topk_lowest_index_ties(pt, 2)
    assert idx.tolist() == [[1, 2], [0, 1], [0, 2]], idx.tolist()


# ----------------------------------------------------------------------------------------------
# loader, safetensors, model-level properties
# ----------------------------------------------------------------------------------------------

def test_safetensors_dtypes_roundtrip():
    d = os.path.join(_TMP, "st")
    os.makedirs(d, exist_ok=True)
    a = np.array([[1.0, -2.5, 3.14159265, 1e-3], [65504.0, -0.0, 1.0 / 3.0, 7.0]], dtype=np.float32)
    path = os.path.join(d, "x.safetensors")
    W.write_safetensors(path, [("a32", a, "f32"), ("a16", a, "f16"), ("abf", a, "bf16")])
    t = R.read_safetensors(path)
    assert np.array_equal(t["a32"].numpy(), a.astype(np.float64))
    assert np.array_equal(t["a16"].numpy(), a.astype(np.float16).astype(np.float64))
    # bf16: 1.0, -2.5, 7, 65504->65536 (RNE), 1/3 -> 0.333984375
    b = t["abf"].numpy()
    assert b[0, 0] == 1.0 and b[0, 1] == -2.5 and b[1, 3] == 7.0 and b[1, 0] == 65536.0, b
    assert b[1, 2] == 0.333984375 and b[0, 2] == 3.140625, b
    # header parsing: 8-byte LE length, __metadata__ ignored, offsets relative to data start
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    assert "__metadata__" in hdr
    hdr2, meta, start = R.read_safetensors_header(path)
    assert meta == {"format": "pt"} and start == 8 + n and "__metadata__" not in hdr2


def test_loader_layout_and_dtypes():
    d = _ckpt("base")
    files = sorted(os.listdir(d))
    assert files == ["config.json", "model-00000-of-00003.safetensors", "model-00001-of-00003.safetensors",
                     "model-00002-of-00003.safetensors", "model.safetensors.index.json"], files
    m = R.load_checkpoint(d)
    assert m.dtypes["model.layers.0.block_sparse_moe.gate.weight"] == "F32"
    assert m.dtypes["model.layers.0.self_attn.qkv_proj.weight"] == "BF16"
    assert m.types == [0] * 7 + [1]
    for n, t in m.w.items():
        assert t.dtype == torch.float64, n
    # tied embeddings, F16 and F32 weights, single shard
    for name, over in (("tied", dict(tie=True)), ("f16", dict(dtype="f16")), ("f32", dict(dtype="f32", shards=1))):
        m2 = R.load_checkpoint(_ckpt(name, **over))
        lg = R.logits_for_sequence(m2, [1, 2, 3])
        assert lg.shape == (3, m2.V) and torch.isfinite(lg).all()
    m2 = R.load_checkpoint(_ckpt("tied", tie=True))
    assert "lm_head.weight" not in m2.w and m2.lm_head() is m2.w["model.embed_tokens.weight"]


def test_causality_and_greedy_contract():
    m = R.load_checkpoint(_ckpt("base"))
    prompt = R.prompt_ids(5, 1, 40, m.V)
    full = R.logits_for_sequence(m, prompt)
    pre = R.logits_for_sequence(m, prompt[:25])
    err = (full[:25] - pre).abs().max().item()
    assert err < 1e-11, f"prefix logits differ by {err}"
    gen, rows = R.greedy(m, prompt, 4)
    assert len(gen) == 4 and rows.shape == (5, m.V)
    for i in range(4):
        assert gen[i] == int(torch.argmax(rows[i])), "g_{i+1} = argmax(row i)"
    ref = R.logits_for_sequence(m, prompt + gen)[len(prompt) - 1:]
    assert (ref - rows).abs().max().item() < 1e-11
    assert R.argmax_lowest(torch.tensor([1.0, 3.0, 3.0, 2.0], dtype=torch.float64)) == 1


def test_hidden_states_structure():
    m = R.load_checkpoint(_ckpt("base"))
    ids = [3, 1, 4, 1, 5, 9, 2, 6]
    logits, hs = R.forward(m, ids, return_hidden=True)
    assert len(hs["hidden"]) == m.L + 1
    assert torch.equal(logits, R.forward(m, ids))
    for l in range(m.L):
        tr = hs["traces"][l]
        a = m.alpha_la if m.types[l] == 0 else m.alpha_fa
        assert torch.allclose(tr["y"], a * tr["h"] + hs["attn_out"][l], rtol=0, atol=1e-12)
        assert torch.allclose(hs["hidden"][l + 1], m.alpha_mlp * tr["g"] + hs["moe_out"][l], rtol=0, atol=1e-12)
    # postnorm: the residual is the normalised h, so an embedding scale is invisible (up to the eps in RMS)
    m.w["model.embed_tokens.weight"] = m.w["model.embed_tokens.weight"] * 1000.0
    lg2 = R.forward(m, ids)
    rel = ((lg2 - logits).abs().max() / logits.abs().max()).item()
    assert rel < 1e-4, rel


def test_prompt_rule():
    # hand-computed: seed 0, case 0 -> x0 = 17; x1 = 1664525*17 + 1013904223 = 1042201148
    ids = R.prompt_ids(0, 0, 3, 512)
    x = 17
    exp = []
    for _ in range(3):
        x = (1664525 * x + 1013904223) % (1 << 32)
        exp.append(x % 512)
    assert ids == exp and exp[0] == 1042201148 % 512
    assert R.prompt_ids(7, 4, 600, 1000)[:5] == R.prompt_ids(7, 4, 5, 1000)


def test_real_config_parses():
    # the real config must be accepted (shape checks aside): build a Model with no weights and no shape check
    path = "/work/shared/minimax-m1/config.json"
    if not os.path.exists(path):
        return
    cfg = json.load(open(path))

    class NoCheck(R.Model):
        def _check_shapes(self):
            pass

    m = NoCheck(cfg, {}, {})
    assert m.types.count(1) == 10 and m.d == 128 and m.rotary_dim == 64 and m.H == 64
    assert abs(m.alpha_la - 160 ** 0.25) < 1e-12
    shp = m.expected_shapes()
    assert shp["model.layers.0.self_attn.qkv_proj.weight"] == [24576, 6144]
    assert shp["model.layers.7.self_attn.k_proj.weight"] == [1024, 6144]
    assert len(shp) == 8243, len(shp)  # spec 2.1: 8,243 tensors
    idx = json.load(open("/work/shared/minimax-m1/model.safetensors.index.json"))["weight_map"]
    assert set(idx) == set(shp), sorted(set(idx) ^ set(shp))[:5]


# ----------------------------------------------------------------------------------------------
# hf_crosscheck.py pieces that run without transformers (shape logic with a fake model, patched functions)
# ----------------------------------------------------------------------------------------------

def _hf_expected_shapes(cfg):
    """What transformers' native MiniMaxForCausalLM declares (spec 2.3), written out by hand as the fake model."""
    hd, H, KV, d = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    I, E, V = cfg["intermediate_size"], cfg["num_local_experts"], cfg["vocab_size"]
    s = {"model.embed_tokens.weight": (V, hd), "model.norm.weight": (hd,), "lm_head.weight": (V, hd)}
    for l, ty in enumerate(cfg["attn_type_list"]):
        p = f"model.layers.{l}."
        s[p + "input_layernorm.weight"] = (hd,)
        s[p + "post_attention_layernorm.weight"] = (hd,)
        s[p + "mlp.gate.weight"] = (E, hd)
        s[p + "mlp.experts.gate_up_proj"] = (E, 2 * I, hd)
        s[p + "mlp.experts.down_proj"] = (E, hd, I)
        if ty == 0:
            s[p + "self_attn.qkv_proj.weight"] = (3 * H * d, hd)
            s[p + "self_attn.output_gate.weight"] = (H * d, hd)
            s[p + "self_attn.norm.weight"] = (H * d,)
            s[p + "self_attn.out_proj.weight"] = (hd, H * d)
        else:
            s[p + "self_attn.q_proj.weight"] = (H * d, hd)
            s[p + "self_attn.k_proj.weight"] = (KV * d, hd)
            s[p + "self_attn.v_proj.weight"] = (KV * d, hd)
            s[p + "self_attn.o_proj.weight"] = (hd, H * d)
    return s


def test_hf_convert_weights_with_fake_model():
    import hf_crosscheck as X
    d = _ckpt("base")
    cfg = json.load(open(os.path.join(d, "config.json")))
    m = R.load_checkpoint(d)
    conv = X.convert_weights(cfg, m.w)
    exp = _hf_expected_shapes(cfg)
    X.check_against_model(conv, exp)
    I = cfg["intermediate_size"]
    for l in (0, 7):
        gu = conv[f"model.layers.{l}.mlp.experts.gate_up_proj"]
        dn = conv[f"model.layers.{l}.mlp.experts.down_proj"]
        for e in range(cfg["num_local_experts"]):
            q = f"model.layers.{l}.block_sparse_moe.experts.{e}."
            assert torch.equal(gu[e, :I], m.w[q + "w1.weight"]) and torch.equal(gu[e, I:], m.w[q + "w3.weight"])
            assert torch.equal(dn[e], m.w[q + "w2.weight"])
    assert torch.equal(conv["model.layers.3.mlp.gate.weight"], m.w["model.layers.3.block_sparse_moe.gate.weight"])
    # failures are loud
    for mutate, what in ((lambda c: c.pop("model.layers.2.mlp.gate.weight"), "have no converted"),
                         (lambda c: c.__setitem__("model.layers.2.extra", torch.zeros(1)), "not model parameters"),
                         (lambda c: c.__setitem__("model.layers.2.mlp.experts.down_proj",
                                                  c["model.layers.2.mlp.experts.down_proj"].transpose(1, 2)),
                          "shape mismatches")):
        c2 = dict(conv)
        mutate(c2)
        try:
            X.check_against_model(c2, exp)
        except X.SetupError as e:
            assert what in str(e), str(e)
        else:
            raise AssertionError(f"check_against_model accepted a bad remap ({what})")
    w2 = dict(m.w)
    w2["model.layers.0.block_sparse_moe.bogus"] = torch.zeros(1)
    try:
        X.convert_weights(cfg, w2)
    except X.SetupError:
        pass
    else:
        raise AssertionError("unexpected tensor accepted")
    # tied: lm_head comes from the embedding
    dt = _ckpt("tied", tie=True)
    cfgt = json.load(open(os.path.join(dt, "config.json")))
    mt = R.load_checkpoint(dt)
    convt = X.convert_weights(cfgt, mt.w)
    assert convt["lm_head.weight"] is mt.w["model.embed_tokens.weight"]


def test_hf_config_kwargs():
    import hf_crosscheck as X
    cfg = json.load(open(os.path.join(_ckpt("base"), "config.json")))
    kw, meta = X.hf_config_kwargs(cfg)
    assert kw["layer_types"] == ["linear_attention"] * 7 + ["full_attention"]
    a = cfg["layernorm_linear_attention_alpha"]
    assert kw["linear_attn_alpha_factor"] == a and kw["full_attn_alpha_factor"] == a and kw["mlp_alpha_factor"] == a
    assert kw["block_size"] == 256 and kw["head_dim"] == 32 and kw["num_key_value_heads"] == 2
    assert kw["rope_parameters"]["rope_theta"] == 1e7 and meta["rotary_dim"] == 16
    # the spec-derived lambda in the crosscheck is the same number as the reference's (written separately)
    for l in range(8):
        assert torch.equal(X.spec_lambda_fp32(4, l, 8), R.lightning_decay(4, l, 8))
    assert torch.equal(X.spec_lambda_fp32(64, 5, 80), R.lightning_decay(64, 5, 80))


def test_hf_patches_with_fake_module():
    """Apply hf_crosscheck's patches to a fake modeling_minimax and compare the patched maths with minimax_ref."""
    import types
    import hf_crosscheck as X

    def rotate_half(x):
        x1 = x[..., : x.shape[-1] // 2]
        x2 = x[..., x.shape[-1] // 2:]
        return torch.cat((-x2, x1), dim=-1)

    def repeat_kv(h, n):
        b, kvh, s, dd = h.shape
        return h[:, :, None].expand(b, kvh, n, s, dd).reshape(b, kvh * n, s, dd)

    class Rot(torch.nn.Module):
        def forward(self, x, position_ids):
            raise AssertionError("unpatched")

    class Norm(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("unpatched")

    class Router(torch.nn.Module):
        def forward(self, x):
            raise AssertionError("unpatched")

    mm = types.SimpleNamespace(rotate_half=rotate_half, apply_rotary_pos_emb=None, repeat_kv=repeat_kv,
                               eager_attention_forward=None, MiniMaxRotaryEmbedding=Rot, MiniMaxRMSNorm=Norm,
                               MiniMaxTopKRouter=Router)
    rd, d, theta = 16, 32, 1e7
    P = X.Patches(mm, torch, rd, d, theta, torch.float64, precision=True)
    P.apply_module_patches()
    try:
        T, Hq, KV = 37, 4, 2
        rot = Rot()
        rot.inv_freq = torch.tensor([theta ** (-2.0 * c / rd) for c in range(rd // 2)], dtype=torch.float64).float()
        x = torch.zeros(1, T, 8, dtype=torch.float64)
        cos, sin = Rot.forward(rot, x, torch.arange(T)[None])
        rc, rs = R.rope_cos_sin(list(range(T)), rd, theta)
        assert torch.equal(cos[0, :, :rd // 2], rc) and torch.equal(cos[0, :, rd // 2:], rc)
        assert torch.equal(sin[0, :, :rd // 2], rs)
        q = torch.randn(1, Hq, T, d, dtype=torch.float64)
        k = torch.randn(1, KV, T, d, dtype=torch.float64)
        qe, ke = mm.apply_rotary_pos_emb(q, k, cos, sin)
        ref_q = R.apply_rope(q[0].permute(1, 0, 2), rc, rs, rd).permute(1, 0, 2)
        ref_k = R.apply_rope(k[0].permute(1, 0, 2), rc, rs, rd).permute(1, 0, 2)
        assert (qe[0] - ref_q).abs().max() < 1e-15 and (ke[0] - ref_k).abs().max() < 1e-15
        # eager attention with a causal additive mask == reference softmax attention core
        mod = types.SimpleNamespace(num_key_value_groups=Hq // KV)
        v = torch.randn(1, KV, T, d, dtype=torch.float64)
        mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)[None, None]
        out, _ = mm.eager_attention_forward(mod, qe, ke, v, mask, scaling=d ** -0.5)
        kv_of = torch.arange(Hq) // (Hq // KV)
        s = torch.matmul(qe[0], ke[0][kv_of].transpose(1, 2)) / math.sqrt(d) + mask[0, 0]
        ref = torch.matmul(torch.softmax(s, -1), v[0][kv_of]).transpose(0, 1)
        assert (out[0] - ref).abs().max() < 1e-14
        # norm and router in float64
        nm = Norm()
        nm.weight = torch.nn.Parameter(torch.randn(64, dtype=torch.float64))
        nm.variance_epsilon = 1e-6
        h = torch.randn(5, 64, dtype=torch.float64)
        assert (Norm.forward(nm, h) - R.rms(h, nm.weight.detach(), 1e-6)).abs().max() < 1e-14
        rt = Router()
        rt.hidden_dim, rt.top_k = 64, 2
        rt.weight = torch.nn.Parameter(torch.randn(4, 64, dtype=torch.float64))
        _, tv, ti = Router.forward(rt, h)
        assert tv.dtype == torch.float64 and torch.allclose(tv.sum(-1), torch.ones(5, dtype=torch.float64))
        assert P.calls["rope"] == 1 and P.calls["eager_attention"] == 1 and P.calls["router"] == 1
    finally:
        P.undo()
    assert mm.apply_rotary_pos_emb is None


def _run_all():
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_") and callable(f)]
    bad = 0
    for n, f in tests:
        try:
            f()
            print(f"PASS {n}")
        except Exception:
            bad += 1
            print(f"FAIL {n}")
            traceback.print_exc()
    print(f"{len(tests) - bad}/{len(tests)} passed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(_run_all())
