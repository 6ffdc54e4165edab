"""The ops on a GPU against the float64 reference: every layout, source, style and dtype; autograd;
opcheck; errors that write nothing."""

import itertools
import math

import pytest
import torch

import rope_cuda
from gpu_checks import opcheck_both_ops
from reference import assert_close_rel, cos_sin_from_inv_freq, rotate

pytestmark = pytest.mark.gpu
DEV = "cuda"
ROWS = 300


def inv_freq_for(rot, base=10000.0):
    return (1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)).float().to(DEV)


def make_heads(layout, dtype, batch, seq, heads, head_dim, extra_heads=2):
    """q-like input in one of the layouts the op takes, and its [B?, S, H, D] logical view."""
    if layout == "3d-fused":  # a slice of a fused [T, heads + extra, D] projection
        buf = torch.randn(batch * seq, heads + extra_heads, head_dim, device=DEV).to(dtype)
        return buf[:, extra_heads:]
    if layout == "4d-merged":  # [B, S, H, D] view of a transposed [B, H, S, D] tensor (HF)
        return torch.randn(batch, heads, seq, head_dim, device=DEV).to(dtype).transpose(1, 2)
    # 4d-loop: batch and seq cannot merge into one token dimension -> one launch per batch entry
    return torch.randn(seq, batch, heads, head_dim, device=DEV).to(dtype).transpose(0, 1)


def source_args(source, rot, dtype, scaling):
    """Kwargs for the op and a function mapping positions -> float64 (cos, sin)."""
    half = rot // 2
    if source == "computed":
        f = inv_freq_for(rot)
        return dict(inv_freq=f, attention_scaling=scaling), lambda p: cos_sin_from_inv_freq(p, f, scaling)
    angles = torch.rand(ROWS, half, device=DEV, dtype=torch.float64) * 6.3
    table_dtype = dtype if source == "table-own-dtype" else torch.float32
    cos, sin = angles.cos().to(table_dtype), angles.sin().to(table_dtype)

    def lookup(p):
        return cos.double()[p] * scaling, sin.double()[p] * scaling

    if source == "cache":
        cache = torch.cat([cos, sin], dim=-1)
        return dict(cos_sin_cache=cache, attention_scaling=scaling), lookup
    # separate tables, read through a wider row stride as transformers' duplicated rows are
    wide_cos = torch.cat([cos, cos], dim=-1)
    wide_sin = torch.cat([sin, sin], dim=-1)
    return dict(cos=wide_cos[:, :half], sin=wide_sin[:, :half], attention_scaling=scaling), lookup


LAYOUTS = ["3d-fused", "4d-merged", "4d-loop"]
SOURCES = ["table", "table-own-dtype", "cache", "computed"]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]
POSITIONS = [None, torch.int32, torch.int64]


# A float32 table in a float32 tensor's "own dtype" is the "table" case again: left out.
CASES = [c for c in itertools.product(LAYOUTS, SOURCES, DTYPES, POSITIONS, [False, True], [False, True], [False, True])
         if not (c[1] == "table-own-dtype" and c[2] == torch.float32)]


@pytest.mark.parametrize("layout,source,dtype,pos_dtype,interleaved,partial,inplace", CASES)
def test_against_reference(layout, source, dtype, pos_dtype, interleaved, partial, inplace):
    batch, seq, head_dim = (1 if layout == "3d-fused" else 3), 37, 64
    rot = 32 if partial else head_dim
    q = make_heads(layout, dtype, batch, seq, 8, head_dim)
    k = make_heads(layout, dtype, batch, seq, 2, head_dim)  # GQA
    lead = q.shape[:-2]
    if pos_dtype is None:
        positions = None
        pos_ref = torch.arange(seq, device=DEV).expand(lead)  # position = index in the sequence
    else:
        positions = torch.randint(0, ROWS, lead, device=DEV, dtype=pos_dtype)
        pos_ref = positions.long()
    kwargs, cos_sin = source_args(source, rot, dtype, scaling=1.25 if source != "table-own-dtype" else 1.0)
    cos, sin = cos_sin(pos_ref)
    cos, sin = cos[..., None, :], sin[..., None, :]  # broadcast over heads
    expected_q = rotate(q, cos, sin, interleaved)
    expected_k = rotate(k, cos, sin, interleaved)
    q_before, k_before = q.clone(), k.clone()
    if inplace:
        out_q, out_k = rope_cuda.apply_rope_(q, k, positions=positions, interleaved=interleaved, **kwargs)
        assert out_q is q and out_k is k
    else:
        out_q, out_k = rope_cuda.apply_rope(q, k, positions=positions, interleaved=interleaved, **kwargs)
        assert torch.equal(q, q_before) and torch.equal(k, k_before)  # inputs untouched
        assert out_q.is_contiguous() and out_q.dtype == dtype
    torch.cuda.synchronize()
    assert_close_rel(out_q, expected_q, dtype)
    assert_close_rel(out_k, expected_k, dtype)
    assert torch.equal(out_q[..., rot:], q_before[..., rot:])  # the tail passes through exactly


def test_fused_qkv_in_place_leaves_v_alone():
    tokens, d = 50, 128
    qkv = torch.randn(tokens, 8 + 2 + 2, d, device=DEV, dtype=torch.bfloat16)
    before = qkv.clone()
    positions = torch.randint(0, 4096, (tokens,), device=DEV)
    rope_cuda.apply_rope_(qkv[:, :8], qkv[:, 8:10], positions=positions, inv_freq=inv_freq_for(d))
    assert torch.equal(qkv[:, 10:], before[:, 10:])
    cos, sin = cos_sin_from_inv_freq(positions, inv_freq_for(d))
    assert_close_rel(qkv[:, :10], rotate(before[:, :10], cos[:, None], sin[:, None]))


def test_per_batch_tables_merged_and_broadcast():
    batch, seq, d = 3, 20, 64
    q = torch.randn(batch, seq, 4, d, device=DEV)
    angles = torch.rand(batch, seq, d // 2, device=DEV, dtype=torch.float64) * 6
    cos, sin = angles.cos().float(), angles.sin().float()
    (out,) = torch.ops.rope_cuda.rope(q, None, cos=cos, sin=sin)  # row = (b, s)
    assert_close_rel(out, rotate(q, cos.double()[:, :, None], sin.double()[:, :, None]))
    (shared,) = torch.ops.rope_cuda.rope(q, None, cos=cos[:1], sin=sin[:1])  # broadcast over the batch
    assert_close_rel(shared, rotate(q, cos.double()[:1, :, None], sin.double()[:1, :, None]))


def test_long_positions_computed_exactly():
    positions = torch.tensor([0, 1, 131071, 524288, 1_000_000], device=DEV)
    q = torch.randn(5, 2, 128, device=DEV)
    f = inv_freq_for(128, 500000.0)
    (out,) = torch.ops.rope_cuda.rope(q, None, positions, inv_freq=f)
    cos, sin = cos_sin_from_inv_freq(positions, f)
    assert_close_rel(out, rotate(q, cos[:, None], sin[:, None]))


def test_out_of_range_positions_leave_tokens_unchanged():
    q = torch.randn(4, 2, 64, device=DEV)
    before = q.clone()
    cache = torch.randn(10, 64, device=DEV)
    rope_cuda.apply_rope_(q, positions=torch.tensor([0, 10, -1, 3], device=DEV), cos_sin_cache=cache)
    assert torch.equal(q[1:3], before[1:3]) and not torch.equal(q[0], before[0])


def test_empty_inputs():
    q = torch.empty(0, 4, 64, device=DEV)
    (out,) = torch.ops.rope_cuda.rope(q, None, inv_freq=inv_freq_for(64))
    assert out.shape == q.shape
    rope_cuda.apply_rope_(q, inv_freq=inv_freq_for(64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("partial", [False, True])
def test_backward_matches_reference_autograd(dtype, partial):
    batch, seq, d = 2, 9, 64
    rot = 32 if partial else d
    f = inv_freq_for(rot)
    positions = torch.randint(0, 1000, (batch, seq), device=DEV)
    q = torch.randn(batch, seq, 4, d, device=DEV).to(dtype).requires_grad_()
    k = torch.randn(batch, seq, 2, d, device=DEV).to(dtype).requires_grad_()
    w_q, w_k = torch.randn_like(q, dtype=torch.float64), torch.randn_like(k, dtype=torch.float64)
    out_q, out_k = rope_cuda.apply_rope(q, k, positions=positions, inv_freq=f, attention_scaling=0.9)
    ((out_q.double() * w_q).sum() + (out_k.double() * w_k).sum()).backward()

    q64, k64 = q.detach().double().requires_grad_(), k.detach().double().requires_grad_()
    cos, sin = cos_sin_from_inv_freq(positions, f, 0.9)
    ref_q, ref_k = rotate(q64, cos[..., None, :], sin[..., None, :]), rotate(k64, cos[..., None, :], sin[..., None, :])
    ((ref_q * w_q).sum() + (ref_k * w_k).sum()).backward()
    assert_close_rel(q.grad, q64.grad, dtype)
    assert_close_rel(k.grad, k64.grad, dtype)


def test_backward_with_broadcast_gradient_and_only_k_used():
    q = torch.randn(6, 4, 64, device=DEV, requires_grad=True)
    k = torch.randn(6, 2, 64, device=DEV, requires_grad=True)
    f = inv_freq_for(64)
    out_q, out_k = rope_cuda.apply_rope(q, k, inv_freq=f)
    out_k.sum().backward()  # stride-0 gradient for k, none used for q
    cos, sin = cos_sin_from_inv_freq(torch.arange(6, device=DEV), f)
    expected = rotate(torch.ones_like(k), cos[:, None], sin[:, None], inverse=True)
    assert_close_rel(k.grad, expected)
    assert q.grad is None or not q.grad.any()


def test_double_backward():
    q = torch.randn(5, 2, 32, device=DEV, dtype=torch.float32, requires_grad=True)
    f = inv_freq_for(32)
    (out,) = torch.ops.rope_cuda.rope(q, None, inv_freq=f)
    (g,) = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), q)
    # |R x|^2 = |x|^2 for a rotation: d/dq = 2q, second derivative sums to 2 per element.
    assert_close_rel(g, 2 * q.detach().double())
    assert torch.allclose(gg, torch.full_like(gg, 2.0))


def test_cos_sin_that_require_grad_are_refused_in_backward():
    q = torch.randn(5, 2, 32, device=DEV, requires_grad=True)
    cos = torch.rand(8, 16, device=DEV, requires_grad=True)
    (out,) = torch.ops.rope_cuda.rope(q, None, None, cos, cos.detach())
    with pytest.raises(RuntimeError, match="gradients flow to q and k only, but cos requires grad"):
        out.sum().backward()


OPCHECK_CASES = {
    "table-3d-gqa": lambda: (torch.randn(7, 4, 64, device=DEV, dtype=torch.bfloat16),
                             torch.randn(7, 2, 64, device=DEV, dtype=torch.bfloat16),
                             torch.randint(0, 16, (7,), device=DEV), torch.rand(16, 32, device=DEV),
                             torch.rand(16, 32, device=DEV), None, None, 1.0, False, False),
    "cache-partial-interleaved": lambda: (torch.randn(5, 3, 64, device=DEV), None,
                                          torch.randint(0, 9, (5,), device=DEV, dtype=torch.int32), None, None,
                                          torch.rand(9, 32, device=DEV), None, 1.0, True, False),
    "computed-4d-scaled": lambda: (torch.randn(2, 6, 4, 32, device=DEV, dtype=torch.float16),
                                   torch.randn(2, 6, 1, 32, device=DEV, dtype=torch.float16), None, None, None, None,
                                   inv_freq_for(32), 1.5, False, False),
}


@pytest.mark.parametrize("case", list(OPCHECK_CASES))
def test_opcheck(case):
    opcheck_both_ops(OPCHECK_CASES[case]())


def test_rejected_calls_write_nothing_and_the_process_goes_on():
    qkv = torch.randn(6, 6, 64, device=DEV)
    before = qkv.clone()
    cache = torch.rand(16, 64, device=DEV)
    bad_calls = [
        dict(attention_scaling=math.nan),
        dict(k=qkv[:, 1:3]),  # k overlaps q
        dict(positions=torch.zeros(6, device=DEV, dtype=torch.int16)),
    ]
    for bad in bad_calls:
        args = dict(k=None, positions=None, cos_sin_cache=cache, attention_scaling=1.0)
        args.update(bad)
        with pytest.raises(ValueError, match="rope_cuda: "):
            rope_cuda.apply_rope_(qkv[:, :4], args.pop("k"), **args)
    torch.cuda.synchronize()
    assert torch.equal(qkv, before)
    rope_cuda.apply_rope_(qkv[:, :4], qkv[:, 4:], cos_sin_cache=cache)  # a good call still works
    torch.cuda.synchronize()
    assert not torch.equal(qkv, before)


def test_mixed_devices_refused():
    q = torch.randn(4, 2, 64, device=DEV)
    with pytest.raises(ValueError, match="cos is on cpu but q is on cuda"):
        torch.ops.rope_cuda.rope(q, None, None, torch.rand(8, 32), torch.rand(8, 32))
