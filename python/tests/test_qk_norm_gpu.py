"""QK-RMSNorm + RoPE (torch.ops.rope_cuda.rope_qk_norm_, rope_cuda.apply_qk_norm_rope_) and vLLM's
fused_qk_norm_rope drop-in, against a float64 reference written from vLLM's kernel semantics: each
q / k head x becomes rotate(x * rsqrt(mean(x^2) + eps) * w) (w + 1 for Gemma's weights), in fp32,
rounded once; v untouched. Also opcheck, torch.compile(fullgraph) and argument errors."""

import pytest
import torch

import rope_cuda
from rope_cuda import vllm
from reference import assert_close_rel, cos_sin_from_inv_freq, rotate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEV = "cuda"


def reference(x, w, eps, one_plus, cos, sin, interleaved):
    """float64: RMSNorm over the whole head, weight, then the rotation of the first 2 * cos.shape[-1]."""
    x = x.double()
    inv = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    weight = w.double() + (1.0 if one_plus else 0.0)
    return rotate(x * inv * weight, cos, sin, interleaved)


def inv_freq(rot, base=1e6):
    return (1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)).float().to(DEV)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("source", ["cos_sin_cache", "inv_freq"])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("one_plus", [False, True])
def test_matches_reference(dtype, interleaved, source, rot, one_plus):
    torch.manual_seed(0)
    tokens, hq, hk, hv, d = 37, 8, 2, 2, 128
    qkv = torch.randn(tokens, (hq + hk + hv) * d, device=DEV).to(dtype)
    packed = qkv.view(tokens, hq + hk + hv, d)
    q, k, v = packed[:, :hq], packed[:, hq:hq + hk], packed[:, hq + hk:]
    x_q, x_k, v_before = q.clone(), k.clone(), v.clone()
    qw = (torch.rand(d, device=DEV) + 0.5).to(dtype)
    kw = (torch.rand(d, device=DEV) - 0.5).to(dtype)
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    freq = inv_freq(rot)
    cos, sin = cos_sin_from_inv_freq(positions, freq)
    kwargs = dict(q_weight=qw, k_weight=kw, eps=1e-6, weight_one_plus=one_plus, positions=positions,
                  interleaved=interleaved)
    if source == "inv_freq":
        kwargs["inv_freq"] = freq
    else:
        angle = torch.arange(4096, device=DEV, dtype=torch.float64)[:, None] * freq.double()
        kwargs["cos_sin_cache"] = torch.cat((angle.cos(), angle.sin()), dim=-1).float()
    with torch.no_grad():
        rope_cuda.apply_qk_norm_rope_(q, k, **kwargs)
    assert_close_rel(q, reference(x_q, qw, 1e-6, one_plus, cos[:, None], sin[:, None], interleaved), dtype)
    assert_close_rel(k, reference(x_k, kw, 1e-6, one_plus, cos[:, None], sin[:, None], interleaved), dtype)
    assert torch.equal(v, v_before)


@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_vllm_fused_qk_norm_rope(is_neox, dtype):
    torch.manual_seed(1)
    tokens, hq, hk, hv, d, rows = 19, 16, 4, 4, 128, 2048
    qkv = torch.randn(tokens, (hq + hk + hv) * d, device=DEV).to(dtype)
    before = qkv.clone()
    qw = torch.randn(d, device=DEV).to(dtype)
    kw = torch.randn(d, device=DEV).to(dtype)
    freq = inv_freq(d)
    angle = torch.arange(rows, device=DEV, dtype=torch.float64)[:, None] * freq.double()
    cache = torch.cat((angle.cos(), angle.sin()), dim=-1).to(dtype)  # vLLM's cache in the model's dtype
    positions = torch.randint(0, rows, (tokens,), device=DEV, dtype=torch.int64)
    vllm.fused_qk_norm_rope(qkv, hq, hk, hv, d, 1e-6, qw, kw, cache, is_neox, positions)
    c, s = cache[positions, : d // 2].double(), cache[positions, d // 2:].double()
    heads = before.view(tokens, hq + hk + hv, d)
    out = qkv.view(tokens, hq + hk + hv, d)
    want_q = reference(heads[:, :hq], qw, 1e-6, False, c[:, None], s[:, None], not is_neox)
    want_k = reference(heads[:, hq:hq + hk], kw, 1e-6, False, c[:, None], s[:, None], not is_neox)
    assert_close_rel(out[:, :hq], want_q, dtype)
    assert_close_rel(out[:, hq:hq + hk], want_k, dtype)
    assert torch.equal(out[:, hq + hk:], heads[:, hq + hk:])


def test_packed_sequences_take_their_positions():
    # cu_seqlens gives each token its index in its sequence: the same result as those positions.
    torch.manual_seed(2)
    lengths = [5, 0, 9, 3]
    cu = torch.tensor([0, 5, 5, 14, 17], dtype=torch.int32, device=DEV)
    positions = torch.cat([torch.arange(n, device=DEV) for n in lengths])
    q = torch.randn(17, 4, 64, device=DEV, dtype=torch.bfloat16)
    k = torch.randn(17, 2, 64, device=DEV, dtype=torch.bfloat16)
    w = torch.randn(64, device=DEV, dtype=torch.bfloat16)
    freq = inv_freq(64)
    a = (q.clone(), k.clone())
    b = (q.clone(), k.clone())
    with torch.no_grad():
        rope_cuda.apply_qk_norm_rope_(*a, q_weight=w, k_weight=w, positions=positions, inv_freq=freq)
        rope_cuda.apply_qk_norm_rope_(*b, q_weight=w, k_weight=w, cu_seqlens=cu, inv_freq=freq)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_opcheck_and_compile():
    q = torch.randn(6, 4, 64, device=DEV)
    k = torch.randn(6, 2, 64, device=DEV)
    w = torch.rand(64, device=DEV)
    freq = inv_freq(64)
    positions = torch.arange(6, device=DEV)
    torch.library.opcheck(torch.ops.rope_cuda.rope_qk_norm_.default,
                          (q.clone(), k.clone(), w, w, 1e-6, False, positions, None, None, None, freq))

    def step(q, k, positions):
        rope_cuda.apply_qk_norm_rope_(q, k, q_weight=w, k_weight=w, positions=positions, inv_freq=freq)
        return q * 2, k * 2

    eager = step(q.clone(), k.clone(), positions)
    compiled = torch.compile(step, fullgraph=True, dynamic=True)(q.clone(), k.clone(), positions)
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])


def test_errors_write_nothing():
    q = torch.randn(4, 2, 64, device=DEV)
    k = torch.randn(4, 2, 64, device=DEV)
    before = (q.clone(), k.clone())
    w = torch.ones(64, device=DEV)
    cases = [
        (dict(k_weight=w), "q_weight is required"),
        (dict(q_weight=w), "k_weight is required"),
        (dict(q_weight=w.half(), k_weight=w), "q_weight dtype must be q's"),
        (dict(q_weight=torch.ones(32, device=DEV), k_weight=w), "q_weight must be [head_dim] = [64]"),
        (dict(q_weight=w, k_weight=w, eps=float("nan")), "eps must be finite and non-negative"),
        (dict(q_weight=torch.ones(128, device=DEV)[::2], k_weight=w), "q_weight must be contiguous"),
    ]
    for kwargs, match in cases:
        with torch.no_grad(), pytest.raises(ValueError, match=match.replace("[", r"\[").replace("]", r"\]")):
            rope_cuda.apply_qk_norm_rope_(q, k, positions=torch.arange(4, device=DEV), inv_freq=inv_freq(64), **kwargs)
    assert torch.equal(q, before[0]) and torch.equal(k, before[1])
    qkv = torch.randn(4, 6 * 64, device=DEV)
    with pytest.raises(ValueError, match="qkv must be"):
        vllm.fused_qk_norm_rope(qkv, 2, 2, 1, 64, 1e-6, w, w, torch.randn(8, 64, device=DEV), True,
                                torch.arange(4, device=DEV))
    with pytest.raises(ValueError, match="position_ids must be"):
        vllm.fused_qk_norm_rope(qkv, 2, 2, 2, 64, 1e-6, w, w, torch.randn(8, 64, device=DEV), True,
                                torch.arange(3, device=DEV))
