"""Packed sequences (THD), per-sequence offsets and context parallelism: the Transformer Engine and
FlashAttention drop-ins against references written from those libraries' documented semantics,
apply_rope's cu_seqlens / seqlen_offsets / cp arguments against explicit positions, torch.compile,
CUDA graphs, opcheck, a transformers training step on a packed batch, and a two-process run
(context and tensor parallelism through torch.distributed)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rope_cuda
from rope_cuda import flash_attn, te
from gpu_checks import captured, opcheck_both_ops
from packed_layout import cu_seqlens_of, inv_freq_for, megatron_freqs, shard_rows
from reference import assert_close_rel, rotate

DEV = "cuda"
DTYPES = [torch.float32, torch.bfloat16]
# (cp_size, cp_rank): every rank of 1, 2 and 4-way context parallelism.
CP_RANKS = [(1, 0), (2, 0), (2, 1), (4, 0), (4, 1), (4, 2), (4, 3)]


# ----------------------------------------------------------------------------------------------
# Transformer Engine reference (transformer_engine.pytorch.attention.rope, unfused path, float64)
# ----------------------------------------------------------------------------------------------

def te_rotate_half(x, interleaved):
    if not interleaved:
        x1, x2 = torch.chunk(x, 2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)
    x1, x2 = x[..., ::2], x[..., 1::2]
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def te_base(t, freqs, start_positions, tensor_format, interleaved):
    """TE's _apply_rotary_pos_emb_base: each element rotates by its own angle freqs[..., j]."""
    cur_seq_len = t.shape[1] if tensor_format == "bshd" else t.shape[0]
    if start_positions is not None:
        assert int(max(start_positions)) + cur_seq_len <= freqs.shape[0]
        freqs = torch.cat([freqs[i: i + cur_seq_len] for i in start_positions], dim=1)  # [s, b, 1, d2]
    assert cur_seq_len <= freqs.shape[0]
    freqs = freqs[:cur_seq_len]
    if tensor_format == "bshd":
        freqs = freqs.transpose(0, 1)
    cos_, sin_ = torch.cos(freqs), torch.sin(freqs)
    rot_dim = freqs.shape[-1]
    x, x_pass = t[..., :rot_dim], t[..., rot_dim:]
    return torch.cat((x * cos_ + te_rotate_half(x, interleaved) * sin_, x_pass), dim=-1)


def te_freqs_on_this_cp_rank(freqs, seqlen, cp_size, cp_rank):
    """TE's _get_freqs_on_this_cp_rank: the load-balanced chunks r and 2 * cp_size - 1 - r."""
    if cp_size == 1:
        return freqs
    seg = seqlen // 2
    full = cp_size * seqlen
    return torch.cat([freqs[cp_rank * seg: (cp_rank + 1) * seg],
                      freqs[full - (cp_rank + 1) * seg: full - cp_rank * seg]])


def te_reference(t, freqs, tensor_format, start_positions=None, interleaved=False, cu_seqlens=None, cp_size=1,
                 cp_rank=0):
    """TE's apply_rotary_pos_emb (fused=False) in float64; differentiable with respect to t."""
    t, freqs = t.double(), freqs.double()
    starts = start_positions.tolist() if start_positions is not None else None
    if tensor_format == "thd":
        cu = (cu_seqlens // cp_size).tolist()
        lengths = [b - a for a, b in zip(cu, cu[1:])]
        pieces = [te_base(x.unsqueeze(1), te_freqs_on_this_cp_rank(freqs, x.shape[0], cp_size, cp_rank),
                          starts[i: i + 1] if starts is not None else None, "sbhd", interleaved)
                  for i, x in enumerate(torch.split(t, lengths))]
        return torch.cat(pieces).squeeze(1)
    seqlen = t.shape[0] if tensor_format == "sbhd" else t.shape[1]
    return te_base(t, te_freqs_on_this_cp_rank(freqs, seqlen, cp_size, cp_rank), starts, tensor_format, interleaved)


# ----------------------------------------------------------------------------------------------
# FlashAttention reference (flash_attn.layers.rotary.apply_rotary_emb, float64)
# ----------------------------------------------------------------------------------------------

def fa_positions(x, seqlen_offsets, cu_seqlens):
    """Each token's row of cos / sin: its index in its sequence plus its sequence's offset."""
    if cu_seqlens is None:
        batch, seqlen = x.shape[:2]
        offsets = seqlen_offsets.tolist() if isinstance(seqlen_offsets, torch.Tensor) else [seqlen_offsets] * batch
        return torch.stack([torch.arange(seqlen) + o for o in offsets])  # [b, s]
    cu = cu_seqlens.tolist()
    count = len(cu) - 1
    offsets = seqlen_offsets.tolist() if isinstance(seqlen_offsets, torch.Tensor) else [seqlen_offsets] * count
    return torch.cat([torch.arange(cu[i + 1] - cu[i]) + offsets[i] for i in range(count)])  # [total]


def fa_reference(x, cos, sin, interleaved=False, seqlen_offsets=0, cu_seqlens=None):
    """out1 = x1 cos - x2 sin, out2 = x1 sin + x2 cos on the first rotary_dim elements; x1 / x2 the
    halves (GPT-NeoX) or the even / odd elements (GPT-J). Differentiable with respect to x."""
    x = x.double()
    pos = fa_positions(x, seqlen_offsets, cu_seqlens).to(x.device)
    c, s = cos.double()[pos][..., None, :], sin.double()[pos][..., None, :]  # broadcast over heads
    half = cos.shape[-1]
    rot = 2 * half
    if interleaved:
        x1, x2 = x[..., 0:rot:2], x[..., 1:rot:2]
    else:
        x1, x2 = x[..., :half], x[..., half:rot]
    o1, o2 = x1 * c - x2 * s, x1 * s + x2 * c
    rotated = torch.stack((o1, o2), dim=-1).flatten(-2) if interleaved else torch.cat((o1, o2), dim=-1)
    return torch.cat((rotated, x[..., rot:]), dim=-1)


def fa_tables(rot, dtype, rows):
    """cos / sin [rows, rot / 2] as FlashAttention's RotaryEmbedding caches them (x's dtype)."""
    angles = torch.arange(rows, device=DEV, dtype=torch.float32)[:, None] * inv_freq_for(rot)[None]
    return angles.cos().to(dtype), angles.sin().to(dtype)


# ----------------------------------------------------------------------------------------------
# The references agree with each other and with the chunk rule (CPU: they need no GPU)
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cp_size", [2, 4])
def test_te_reference_shards_reassemble_the_whole_run(cp_size):
    lengths = [16, 48, 0, 8, 64]
    t = torch.randn(sum(lengths), 2, 16, dtype=torch.float64)
    freqs = megatron_freqs(64, 16, False, device="cpu")
    cu = cu_seqlens_of(lengths, device="cpu")
    whole = te_reference(t, freqs, "thd", cu_seqlens=cu)
    for r in range(cp_size):
        rows = shard_rows(lengths, cp_size, r)
        assert torch.equal(te_reference(t[rows], freqs, "thd", cu_seqlens=cu, cp_size=cp_size, cp_rank=r), whole[rows])
    # sbhd: the sequence dimension splits the same way
    x = torch.randn(32, 3, 2, 16, dtype=torch.float64)
    whole = te_reference(x, freqs, "sbhd")
    for r in range(cp_size):
        rows = shard_rows([32], cp_size, r)
        assert torch.equal(te_reference(x[rows], freqs, "sbhd", cp_size=cp_size, cp_rank=r), whole[rows])


@pytest.mark.parametrize("interleaved", [False, True])
def test_te_and_fa_references_agree(interleaved):
    lengths = [5, 0, 17, 1, 30]
    t = torch.randn(sum(lengths), 3, 32, dtype=torch.float64)
    freqs = megatron_freqs(80, 16, interleaved, device="cpu")
    angles = freqs[:, 0, 0, 0::2] if interleaved else freqs[:, 0, 0, :8]
    cu = cu_seqlens_of(lengths, device="cpu")
    starts = torch.tensor([3, 0, 50, 9, 2])
    expected = fa_reference(t, angles.double().cos(), angles.double().sin(), interleaved, starts, cu)
    torch.testing.assert_close(te_reference(t, freqs, "thd", starts, interleaved, cu), expected, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# 1. Transformer Engine drop-in
# ----------------------------------------------------------------------------------------------

TE_LENGTHS = [16, 48, 0, 8, 64]  # full sequence lengths, multiples of 2 * 4
TE_HEADS, TE_HEAD_DIM, TE_ROWS = 4, 128, 256


def te_input(tensor_format, cp_size, dtype, seq=24, batch=3):
    """t as Megatron hands it over (a head slice of a fused projection) and cu_seqlens (thd)."""
    heads, d = TE_HEADS, TE_HEAD_DIM
    if tensor_format == "thd":
        buf = torch.randn(sum(TE_LENGTHS) // cp_size, heads + 2, d, device=DEV).to(dtype)
        return buf[:, :heads], cu_seqlens_of(TE_LENGTHS)
    lead = (seq, batch) if tensor_format == "sbhd" else (batch, seq)
    buf = torch.randn(*lead, heads + 2, d, device=DEV).to(dtype)
    return buf[:, :, :heads], None


@pytest.mark.gpu
@pytest.mark.parametrize("tensor_format", ["sbhd", "bshd", "thd"])
@pytest.mark.parametrize("cp_size,cp_rank", CP_RANKS)
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_te_matches_reference(tensor_format, cp_size, cp_rank, interleaved, rot, dtype):
    torch.manual_seed(0)
    t, cu = te_input(tensor_format, cp_size, dtype)
    freqs = megatron_freqs(TE_ROWS, rot, interleaved)
    before = t.clone()
    out = te.apply_rotary_pos_emb(t, freqs, tensor_format, interleaved=interleaved, cu_seqlens=cu, cp_size=cp_size,
                                  cp_rank=cp_rank)
    assert out.shape == t.shape and out.dtype == dtype
    assert torch.equal(t, before)  # out of place
    expected = te_reference(before, freqs, tensor_format, interleaved=interleaved, cu_seqlens=cu, cp_size=cp_size,
                            cp_rank=cp_rank)
    assert_close_rel(out, expected, dtype)
    assert torch.equal(out[..., rot:], before[..., rot:])  # the tail passes through exactly


@pytest.mark.gpu
@pytest.mark.parametrize("tensor_format", ["sbhd", "bshd", "thd"])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_te_start_positions(tensor_format, interleaved, pos_dtype, dtype):
    torch.manual_seed(1)
    t, cu = te_input(tensor_format, 1, dtype)
    freqs = megatron_freqs(TE_ROWS, 128, interleaved)
    starts = [3, 0, 17, 9, 40] if tensor_format == "thd" else [0, 5, 100]
    start_positions = torch.tensor(starts, device=DEV, dtype=pos_dtype)
    # A call without offsets first (the drop-in keeps positions of plain calls), then with them.
    plain = te.apply_rotary_pos_emb(t, freqs, tensor_format, interleaved=interleaved, cu_seqlens=cu)
    shifted = te.apply_rotary_pos_emb(t, freqs, tensor_format, start_positions=start_positions,
                                      interleaved=interleaved, fused=True, cu_seqlens=cu)
    assert_close_rel(plain, te_reference(t, freqs, tensor_format, interleaved=interleaved, cu_seqlens=cu), dtype)
    assert_close_rel(shifted, te_reference(t, freqs, tensor_format, start_positions, interleaved, cu), dtype)
    assert not torch.equal(plain, shifted)


def test_te_refuses_start_positions_with_context_parallelism_and_thd_without_cu_seqlens():
    # Both are refused before anything runs, so CPU tensors show it.
    freqs = megatron_freqs(64, 32, False, device="cpu")
    t = torch.randn(8, 2, 2, 32)
    for tensor_format in ("sbhd", "bshd"):
        with pytest.raises(ValueError, match="start_positions"):
            te.apply_rotary_pos_emb(t, freqs, tensor_format, start_positions=torch.zeros(2, dtype=torch.int32),
                                    cp_size=2, cp_rank=0)
    packed = t.reshape(16, 2, 32)
    with pytest.raises(ValueError, match="start_positions"):
        te.apply_rotary_pos_emb(packed, freqs, "thd", start_positions=torch.zeros(1, dtype=torch.int32),
                                cu_seqlens=torch.tensor([0, 32], dtype=torch.int32), cp_size=2, cp_rank=1)
    with pytest.raises(ValueError, match="cu_seqlens"):
        te.apply_rotary_pos_emb(packed, freqs, "thd")


# ----------------------------------------------------------------------------------------------
# 2. Gradients
# ----------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("cp_rank", [0, 1])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_te_thd_context_parallel_gradient(cp_rank, interleaved, dtype):
    torch.manual_seed(2)
    cu = cu_seqlens_of(TE_LENGTHS)
    t = torch.randn(sum(TE_LENGTHS) // 2, TE_HEADS, TE_HEAD_DIM, device=DEV).to(dtype).requires_grad_()
    freqs = megatron_freqs(TE_ROWS, 64, interleaved)  # partial rotary: the tail's gradient passes through
    out = te.apply_rotary_pos_emb(t, freqs, "thd", interleaved=interleaved, cu_seqlens=cu, cp_size=2, cp_rank=cp_rank)
    g = torch.randn_like(out)
    out.backward(g)

    t64 = t.detach().double().requires_grad_()
    expected = te_reference(t64, freqs, "thd", interleaved=interleaved, cu_seqlens=cu, cp_size=2, cp_rank=cp_rank)
    expected.backward(g.double())
    assert t.grad.dtype == dtype
    assert_close_rel(t.grad, t64.grad, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fa_packed_offsets_gradient(interleaved, dtype):
    torch.manual_seed(3)
    lengths = [5, 0, 17, 1, 64]
    cu = cu_seqlens_of(lengths)
    offsets = torch.tensor([3, 0, 50, 190, 9], device=DEV, dtype=torch.int32)
    cos, sin = fa_tables(96, dtype, 256)
    x = torch.randn(sum(lengths), 4, 128, device=DEV).to(dtype).requires_grad_()
    out = flash_attn.apply_rotary_emb(x, cos, sin, interleaved, seqlen_offsets=offsets, cu_seqlens=cu,
                                      max_seqlen=max(lengths))
    g = torch.randn_like(out)
    out.backward(g)

    x64 = x.detach().double().requires_grad_()
    fa_reference(x64, cos, sin, interleaved, offsets, cu).backward(g.double())
    assert_close_rel(x.grad, x64.grad, dtype)


# ----------------------------------------------------------------------------------------------
# 3. FlashAttention drop-in
# ----------------------------------------------------------------------------------------------

FA_ROWS = 256


@pytest.mark.gpu
@pytest.mark.parametrize("offsets", ["zero", "int", "tensor32", "tensor64"])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fa_batched_matches_reference(offsets, interleaved, rot, dtype):
    torch.manual_seed(4)
    batch, seqlen = 3, 37
    x = torch.randn(batch, seqlen, 4, 128, device=DEV).to(dtype)
    cos, sin = fa_tables(rot, dtype, FA_ROWS)
    seqlen_offsets = {"zero": 0, "int": 5,
                      "tensor32": torch.tensor([0, 7, 200], device=DEV, dtype=torch.int32),
                      "tensor64": torch.tensor([219, 1, 64], device=DEV, dtype=torch.int64)}[offsets]
    before = x.clone()
    out = flash_attn.apply_rotary_emb(x, cos, sin, interleaved, seqlen_offsets=seqlen_offsets)
    assert out.shape == x.shape and out.dtype == dtype and torch.equal(x, before)
    assert_close_rel(out, fa_reference(x, cos, sin, interleaved, seqlen_offsets), dtype)
    assert torch.equal(out[..., rot:], before[..., rot:])

    returned = flash_attn.apply_rotary_emb(x, cos, sin, interleaved, inplace=True, seqlen_offsets=seqlen_offsets)
    assert returned is x
    assert torch.equal(x, out)


@pytest.mark.gpu
@pytest.mark.parametrize("offsets", ["zero", "int", "tensor32", "tensor64"])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fa_packed_matches_reference(offsets, interleaved, rot, dtype):
    torch.manual_seed(5)
    lengths = [5, 0, 17, 1, 64]  # an empty sequence and a single token among them
    cu = cu_seqlens_of(lengths)
    x = torch.randn(sum(lengths), 4, 128, device=DEV).to(dtype)
    cos, sin = fa_tables(rot, dtype, FA_ROWS)
    seqlen_offsets = {"zero": 0, "int": 3,
                      "tensor32": torch.tensor([3, 0, 50, 190, 9], device=DEV, dtype=torch.int32),
                      "tensor64": torch.tensor([250, 7, 0, 254, 100], device=DEV, dtype=torch.int64)}[offsets]
    before = x.clone()
    out = flash_attn.apply_rotary_emb(x, cos, sin, interleaved, seqlen_offsets=seqlen_offsets, cu_seqlens=cu,
                                      max_seqlen=max(lengths))
    assert out.shape == x.shape and torch.equal(x, before)
    assert_close_rel(out, fa_reference(x, cos, sin, interleaved, seqlen_offsets, cu), dtype)
    assert torch.equal(out[..., rot:], before[..., rot:])

    returned = flash_attn.apply_rotary_emb(x, cos, sin, interleaved, inplace=True, seqlen_offsets=seqlen_offsets,
                                           cu_seqlens=cu, max_seqlen=max(lengths))
    assert returned is x
    assert torch.equal(x, out)


@pytest.mark.gpu
@pytest.mark.parametrize("packed", [False, True])
def test_fa_inplace_on_a_non_leaf_that_requires_grad(packed):
    torch.manual_seed(6)
    cos, sin = fa_tables(64, torch.float32, FA_ROWS)
    if packed:
        lengths = [5, 0, 17, 1, 64]
        kwargs = dict(cu_seqlens=cu_seqlens_of(lengths), max_seqlen=max(lengths),
                      seqlen_offsets=torch.tensor([3, 0, 50, 190, 9], device=DEV))
        leaf = torch.randn(sum(lengths), 4, 128, device=DEV, requires_grad=True)
        ref_kwargs = dict(seqlen_offsets=kwargs["seqlen_offsets"], cu_seqlens=kwargs["cu_seqlens"])
    else:
        kwargs = dict(seqlen_offsets=torch.tensor([0, 7, 200], device=DEV))
        leaf = torch.randn(3, 37, 4, 128, device=DEV, requires_grad=True)
        ref_kwargs = kwargs
    x = leaf * 1.0  # a non-leaf (a projection's output, say)
    out = flash_attn.apply_rotary_emb(x, cos, sin, inplace=True, **kwargs)
    assert out is x
    g = torch.randn_like(out)
    out.backward(g)

    leaf64 = leaf.detach().double().requires_grad_()
    expected = fa_reference(leaf64, cos, sin, False, **ref_kwargs)
    expected.backward(g.double())
    assert_close_rel(out.detach(), expected.detach(), torch.float32)
    assert_close_rel(leaf.grad, leaf64.grad, torch.float32)


# ----------------------------------------------------------------------------------------------
# 4. apply_rope's packed arguments against explicit positions
# ----------------------------------------------------------------------------------------------

PACKED_LENGTHS = [16, 0, 40, 8, 200]  # multiples of 2 * 4
PACKED_OFFSETS = [5, 9, 0, 77, 1000]
PACKED_ROWS = 1300


def explicit_positions(lengths, cp_size, cp_rank, cp_layout, offsets=None):
    """int32 positions of a rank's tokens: index in the full sequence (+ the sequence's offset)."""
    out = []
    for s, n in enumerate(lengths):
        if cp_size == 1:
            index = list(range(n))
        elif cp_layout == "load_balanced":
            c = n // (2 * cp_size)
            index = [*range(cp_rank * c, (cp_rank + 1) * c),
                     *range((2 * cp_size - 1 - cp_rank) * c, (2 * cp_size - cp_rank) * c)]
        else:
            c = n // cp_size
            index = list(range(cp_rank * c, (cp_rank + 1) * c))
        out += [i + (offsets[s] if offsets is not None else 0) for i in index]
    return torch.tensor(out, dtype=torch.int32, device=DEV)


def source_kwargs(source, rot):
    if source == "computed":
        return dict(inv_freq=inv_freq_for(rot, 500000.0))
    angles = torch.rand(PACKED_ROWS, rot // 2, device=DEV, dtype=torch.float64) * 6.3  # any rows: indexing shows
    return dict(cos=angles.cos().float(), sin=angles.sin().float())


def reference_cos_sin(kwargs, positions):
    p = positions.long()
    if "inv_freq" in kwargs:
        angle = p.double()[:, None] * kwargs["inv_freq"].double()
        return angle.cos(), angle.sin()
    return kwargs["cos"].double()[p], kwargs["sin"].double()[p]


@pytest.mark.gpu
@pytest.mark.parametrize("cp_size,cp_rank", CP_RANKS)
@pytest.mark.parametrize("cp_layout", ["load_balanced", "contiguous"])
@pytest.mark.parametrize("with_offsets", [False, True])
@pytest.mark.parametrize("source", ["table", "computed"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_equals_explicit_positions(cp_size, cp_rank, cp_layout, with_offsets, source, dtype):
    torch.manual_seed(7)
    d = 128
    tokens = sum(PACKED_LENGTHS) // cp_size
    qkv = torch.randn(tokens, 8 + 2 + 2, d, device=DEV).to(dtype)  # fused projection: q 8 heads, k 2 (GQA)
    q, k = qkv[:, :8], qkv[:, 8:10]
    cu = cu_seqlens_of(PACKED_LENGTHS)
    rope_cuda.check_cu_seqlens(cu, tokens, cp_size, cp_layout)
    offsets = torch.tensor(PACKED_OFFSETS, device=DEV) if with_offsets else None
    kwargs = source_kwargs(source, d)
    positions = explicit_positions(PACKED_LENGTHS, cp_size, cp_rank, cp_layout,
                                   PACKED_OFFSETS if with_offsets else None)
    assert positions.numel() == tokens

    packed_q, packed_k = rope_cuda.apply_rope(q, k, cu_seqlens=cu, seqlen_offsets=offsets, cp_size=cp_size,
                                              cp_rank=cp_rank, cp_layout=cp_layout, **kwargs)
    explicit_q, explicit_k = rope_cuda.apply_rope(q, k, positions=positions, **kwargs)
    assert torch.equal(packed_q, explicit_q)
    assert torch.equal(packed_k, explicit_k)
    cos, sin = reference_cos_sin(kwargs, positions)
    assert_close_rel(packed_q, rotate(q, cos[:, None], sin[:, None]), dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("cp_layout", ["load_balanced", "contiguous"])
def test_packed_under_torch_compile(cp_layout):
    torch._dynamo.reset()
    inv_freq = inv_freq_for(128)

    def step(q, k, cu_seqlens, offsets):
        return rope_cuda.apply_rope(q, k, inv_freq=inv_freq, cu_seqlens=cu_seqlens, seqlen_offsets=offsets, cp_size=2,
                                    cp_rank=1, cp_layout=cp_layout)

    fn = torch.compile(step, fullgraph=True, dynamic=True)
    torch.manual_seed(8)
    for lengths in ([16, 40, 8], [64, 0, 8, 24], [200, 16], [4, 4, 4, 4, 4]):
        tokens = sum(lengths) // 2
        cu = cu_seqlens_of(lengths)
        offsets = torch.randint(0, 5000, (len(lengths),), device=DEV, dtype=torch.int32)
        q = torch.randn(tokens, 8, 128, device=DEV, requires_grad=True)
        k = torch.randn(tokens, 2, 128, device=DEV, requires_grad=True)
        q2, k2 = q.detach().clone().requires_grad_(), k.detach().clone().requires_grad_()
        w_q, w_k = torch.randn(tokens, 8, 128, device=DEV), torch.randn(tokens, 2, 128, device=DEV)
        compiled, eager = fn(q, k, cu, offsets), step(q2, k2, cu, offsets)
        for a, e in zip(compiled, eager):
            assert torch.equal(a, e)
        ((compiled[0] * w_q).sum() + (compiled[1] * w_k).sum()).backward()
        ((eager[0] * w_q).sum() + (eager[1] * w_k).sum()).backward()
        assert_close_rel(q.grad, q2.grad)
        assert_close_rel(k.grad, k2.grad)


@pytest.mark.gpu
@pytest.mark.parametrize("cp_layout", ["load_balanced", "contiguous"])
def test_packed_in_a_cuda_graph(cp_layout):
    torch.manual_seed(9)
    d, total = 128, 128
    q = torch.randn(total // 2, 8, d, device=DEV, dtype=torch.bfloat16)
    k = torch.randn(total // 2, 2, d, device=DEV, dtype=torch.bfloat16)
    cu = cu_seqlens_of([16, 40, 8, 64])
    offsets = torch.zeros(4, device=DEV, dtype=torch.int64)
    angles = torch.rand(4096, d // 2, device=DEV) * 6.3
    cos, sin = angles.cos(), angles.sin()

    def body():
        return rope_cuda.apply_rope(q, k, cos=cos, sin=sin, cu_seqlens=cu, seqlen_offsets=offsets, cp_size=2,
                                    cp_rank=0, cp_layout=cp_layout)

    graph, (out_q, out_k) = captured(body)
    # New tokens, new sequence boundaries (same total) and new offsets before each replay.
    for lengths in ([16, 40, 8, 64], [64, 8, 40, 16], [0, 128, 0, 0], [4, 4, 116, 4]):
        q.copy_(torch.randn_like(q))
        k.copy_(torch.randn_like(k))
        cu.copy_(cu_seqlens_of(lengths))
        offsets.copy_(torch.randint(0, 3000, (4,), device=DEV))
        positions = explicit_positions(lengths, 2, 0, cp_layout, offsets.tolist())
        expected_q, expected_k = rope_cuda.apply_rope(q, k, positions=positions, cos=cos, sin=sin)
        graph.replay()
        torch.cuda.synchronize()
        assert torch.equal(out_q, expected_q)
        assert torch.equal(out_k, expected_k)


# ----------------------------------------------------------------------------------------------
# 5. opcheck with the packed arguments
# ----------------------------------------------------------------------------------------------

# Positional schema: q, k, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved,
# inverse, mrope_section, mrope_layout, enable_pdl, cu_seqlens, seqlen_offsets, cp_size, cp_rank, cp_layout
OPCHECK_CASES = {
    "table-offsets-cp2-load-balanced": lambda: (
        torch.randn(32, 4, 64, device=DEV, dtype=torch.bfloat16),
        torch.randn(32, 2, 64, device=DEV, dtype=torch.bfloat16),
        None, torch.rand(128, 32, device=DEV), torch.rand(128, 32, device=DEV), None, None, 1.0, False, False, None,
        "contiguous", False, cu_seqlens_of([16, 0, 40, 8]), torch.tensor([3, 50, 7, 60], device=DEV), 2, 1,
        "load_balanced"),
    "computed-cp4-contiguous-interleaved": lambda: (
        torch.randn(16, 3, 64, device=DEV), None, None, None, None, None, inv_freq_for(64), 1.0, True, False, None,
        "contiguous", False, cu_seqlens_of([16, 0, 40, 8]), None, 4, 3, "contiguous"),
    "cache-offsets-int32-scaled": lambda: (
        torch.randn(64, 2, 64, device=DEV, dtype=torch.float16),
        torch.randn(64, 1, 64, device=DEV, dtype=torch.float16),
        None, None, None, torch.rand(256, 64, device=DEV), None, 0.75, False, False, None, "contiguous", False,
        cu_seqlens_of([16, 0, 40, 8]), torch.tensor([100, 0, 9, 1], device=DEV, dtype=torch.int32), 1, 0,
        "load_balanced"),
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(OPCHECK_CASES))
def test_opcheck_packed(case):
    opcheck_both_ops(OPCHECK_CASES[case]())


# ----------------------------------------------------------------------------------------------
# 6. A training step with transformers: a packed batch through the TE drop-in equals the
#    sequences one by one through transformers' own RoPE
# ----------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_packed_training_step_matches_separate_sequences(monkeypatch):
    pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.models.llama import modeling_llama

    # initializer_range 0.1 (not 0.02) sharpens attention, so that positions move the gradients a lot.
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         initializer_range=0.1, attn_implementation="eager")
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(DEV, torch.float32).train()
    lengths = [7, 12, 5]
    seqs = [torch.randint(0, config.vocab_size, (n,), device=DEV) for n in lengths]

    def sequence_loss(logits, ids):  # summed next-token cross entropy of one sequence
        return F.cross_entropy(logits[:-1], ids[1:], reduction="sum")

    def gradients(loss):
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {name: p.grad.detach().clone() for name, p in model.named_parameters()}

    # A: each sequence alone, transformers' own RoPE.
    loss_a = sum(sequence_loss(model(ids[None]).logits[0], ids) for ids in seqs)
    grads_a = gradients(loss_a)

    # The packed batch: [1, T] tokens, a block-diagonal causal mask (no attention across sequences),
    # positions restarting in each sequence.
    ids = torch.cat(seqs)[None]
    total = ids.shape[1]
    seq_id = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths)).to(DEV)
    i = torch.arange(total, device=DEV)
    allowed = (seq_id[:, None] == seq_id[None, :]) & (i[None, :] <= i[:, None])
    mask = torch.zeros(total, total, device=DEV).masked_fill(~allowed, float("-inf"))[None, None]
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None].to(DEV)
    cu = cu_seqlens_of(lengths)

    def packed_loss():
        logits = model(ids, attention_mask=mask, position_ids=position_ids).logits[0]
        bounds = cu.tolist()
        return sum(sequence_loss(logits[a:b], ids[0, a:b]) for a, b in zip(bounds, bounds[1:]))

    # Sanity of the harness: transformers' own RoPE on the packed batch equals A.
    loss_hf = packed_loss()
    grads_hf = gradients(loss_hf)
    torch.testing.assert_close(loss_hf, loss_a, rtol=1e-4, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_hf[name], grads_a[name], rtol=1e-4, atol=1e-5)

    # B: the attention layers' RoPE replaced by the TE drop-in in thd format: the positions come from
    # cu_seqlens alone (transformers' cos / sin are ignored).
    inv_freq = model.model.rotary_emb.inv_freq.float()
    f = torch.arange(config.max_position_embeddings, device=DEV, dtype=torch.float32)[:, None] * inv_freq[None]
    freqs = torch.cat((f, f), dim=-1)[:, None, None, :]
    calls = []

    def thd_rope(cu_seqlens):
        def rotate_pair(q, k, cos, sin, unsqueeze_dim=1):
            calls.append(1)
            assert q.shape[0] == 1 and q.shape[2] == total and unsqueeze_dim == 1

            def rotate_heads(x):  # [1, heads, T, d] -> [T, heads, d] -> rotated -> [1, heads, T, d]
                out = te.apply_rotary_pos_emb(x.transpose(1, 2)[0], freqs, "thd", cu_seqlens=cu_seqlens)
                return out[None].transpose(1, 2)

            return rotate_heads(q), rotate_heads(k)
        return rotate_pair

    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", thd_rope(cu))
    loss_b = packed_loss()
    grads_b = gradients(loss_b)
    assert len(calls) == config.num_hidden_layers
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-4, atol=1e-5)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-4, atol=1e-5)

    # Honesty: wrong boundaries must show. (Positions 0..T-1 for the whole pack would not: RoPE is
    # relative and the mask keeps sequences apart, so a constant shift per sequence changes nothing.
    # Splitting the 12-token sequence 7 + 5 restarts positions inside it.)
    monkeypatch.setattr(modeling_llama, "apply_rotary_pos_emb", thd_rope(cu_seqlens_of([7, 7, 10])))
    grads_wrong = gradients(packed_loss())
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(grads_wrong[name], grads_a[name], rtol=1e-2, atol=1e-3)


# ----------------------------------------------------------------------------------------------
# Two processes: context parallelism (TE drop-in) and tensor parallelism (heads) through
# torch.distributed; see dist_context_parallel.py
# ----------------------------------------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.gpu
def test_two_process_context_and_tensor_parallel():
    script = Path(__file__).with_name("dist_context_parallel.py")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), str(script)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    assert "DIST OK" in output, output[-6000:]
