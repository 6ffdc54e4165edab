"""Every bad argument gets a ValueError with its reason, before anything runs.

The ops' CPU kernels run every check (the binding's and rope::validate's) and then refuse the
call with NotImplementedError, so these tests need no GPU. The checks run before any launch on
CUDA tensors too (test_ops_gpu.py shows a rejected call writes nothing).
"""

import math
import re

import pytest
import torch

import rope_cuda
from rope_cuda import vllm


def base_args(dtype=torch.float16, tokens=5, q_heads=4, k_heads=2, head_dim=64, rows=16):
    q = torch.randn(tokens, q_heads, head_dim).to(dtype)
    k = torch.randn(tokens, k_heads, head_dim).to(dtype)
    return dict(q=q, k=k, positions=torch.randint(0, rows, (tokens,)),
                cos=torch.randn(rows, head_dim // 2), sin=torch.randn(rows, head_dim // 2))


def call_both(args):
    """Runs the functional and the in-place op on the same arguments; returns their exceptions."""
    errors = []
    for fn in (torch.ops.rope_cuda.rope.default, torch.ops.rope_cuda.rope_.default):
        a = dict(args)
        q, k = a.pop("q"), a.pop("k", None)
        with pytest.raises(Exception) as info:
            fn(q, k, **a)
        errors.append(info.value)
    return errors


def expect_value_error(args, match):
    for error in call_both(args):
        assert isinstance(error, ValueError), f"{type(error).__name__}: {error}"
        assert match in str(error), str(error)


def edit(**changes):
    a = base_args()
    a.update(changes)
    return {name: value for name, value in a.items() if value is not None}


def test_valid_arguments_reach_the_device_check():
    for error in call_both(base_args()):
        assert isinstance(error, NotImplementedError)
        assert "run on CUDA tensors" in str(error)


CASES = {
    # the binding's own checks
    "q 2-D": (lambda: edit(q=torch.randn(5, 64).half()), "q must be [tokens, heads, head_dim]"),
    "q float64": (lambda: edit(q=torch.randn(5, 4, 64).double(), k=None), "q dtype must be float32, float16 or bfloat16"),
    "q last dim strided": (lambda: edit(q=torch.randn(5, 4, 128).half()[..., ::2]), "the last dimension (head_dim) must be contiguous"),
    "k last dim strided": (lambda: edit(k=torch.randn(5, 2, 128).half()[..., ::2]), "k: the last dimension"),
    "k dtype": (lambda: edit(k=torch.randn(5, 2, 64).bfloat16()), "k dtype (BFloat16) differs from q's (Half)"),
    "k tokens": (lambda: edit(k=torch.randn(6, 2, 64).half()), "k must have q's tokens and head_dim"),
    "k head_dim": (lambda: edit(k=torch.randn(5, 2, 32).half()), "k must have q's tokens and head_dim"),
    "no source": (lambda: edit(cos=None, sin=None), "pass exactly one cos/sin source"),
    "two sources": (lambda: edit(inv_freq=torch.ones(32)), "pass exactly one cos/sin source"),
    "cos without sin": (lambda: edit(sin=None), "cos and sin must be given together"),
    "cos 3-D with 3-D q": (lambda: edit(cos=torch.randn(1, 16, 32), sin=torch.randn(1, 16, 32)), "cos must be [rows, width], got shape"),
    "cos/sin shapes": (lambda: edit(sin=torch.randn(16, 16)), "cos and sin must have the same shape and dtype"),
    "cos/sin strides": (lambda: edit(sin=torch.randn(16, 64)[:, :32]), "cos and sin must have the same strides"),
    "cos last dim strided": (lambda: edit(cos=torch.randn(16, 64)[:, ::2], sin=torch.randn(16, 64)[:, ::2]), "cos: the last dimension must be contiguous"),
    "table dtype": (lambda: edit(cos=torch.randn(16, 32).bfloat16(), sin=torch.randn(16, 32).bfloat16()), "cos dtype must be float32 or q's dtype (Half), got BFloat16"),
    "table wider than head": (lambda: edit(cos=torch.randn(16, 40), sin=torch.randn(16, 40)), "rejected by the rope library: rotary_dim is larger than head_dim"),
    "cache odd width": (lambda: edit(cos=None, sin=None, cos_sin_cache=torch.randn(16, 63)), "an even width >= 2"),
    "inv_freq 2-D": (lambda: edit(cos=None, sin=None, inv_freq=torch.ones(2, 16)), "inv_freq must be a 1-D tensor"),
    "inv_freq float64": (lambda: edit(cos=None, sin=None, inv_freq=torch.ones(32, dtype=torch.float64)), "inv_freq dtype must be float32"),
    "inv_freq strided": (lambda: edit(cos=None, sin=None, inv_freq=torch.ones(64)[::2]), "inv_freq must be contiguous"),
    "positions dtype": (lambda: edit(positions=torch.zeros(5, dtype=torch.int16)), "positions dtype must be int32 or int64"),
    "positions float": (lambda: edit(positions=torch.zeros(5)), "positions dtype must be int32 or int64"),
    "positions shape": (lambda: edit(positions=torch.zeros(6, dtype=torch.int64)), "positions must have q's leading shape"),
    "positions strided": (lambda: edit(positions=torch.zeros(10, dtype=torch.int64)[::2]), "positions must be contiguous along the tokens"),
    # rope::validate's reasons, passed through
    "odd head_dim": (lambda: edit(q=torch.randn(5, 4, 63).half(), k=None, cos=torch.randn(16, 30), sin=torch.randn(16, 30)), "rejected by the rope library: head_dim must be even"),
    "too many heads": (lambda: edit(q=torch.randn(1, 4000, 2).half(), k=torch.randn(1, 97, 2).half(), positions=torch.zeros(1, dtype=torch.int64), cos=torch.randn(16, 1), sin=torch.randn(16, 1)), "q.num_heads + k.num_heads exceeds 4096"),
    "non-finite scaling": (lambda: edit(attention_scaling=math.nan), "attention_scaling must be finite and > 0"),
    "zero scaling": (lambda: edit(attention_scaling=0.0), "attention_scaling must be finite and > 0"),
    "negative scaling": (lambda: edit(attention_scaling=-1.0), "attention_scaling must be finite and > 0"),
    "cos is sin": (lambda: (lambda t: edit(cos=t, sin=t))(torch.randn(16, 32)), "cos and sin rows overlap"),
    "cache for a smaller rotary_dim": (lambda: (lambda t: edit(cos=t[:, :32], sin=t[:, 16:48]))(torch.randn(16, 64)), "cos and sin rows overlap"),
    "rows without positions": (lambda: edit(positions=None, cos=torch.randn(3, 32), sin=torch.randn(3, 32)), "fewer rows than tokens and no positions"),
    # multi-axis positions (M-RoPE): base_args has 5 tokens and rotary_dim / 2 = 32
    "mrope one entry": (lambda: edit(positions=axes_positions(1), mrope_section=[32]), "mrope_section must have 2 or 3 entries"),
    "mrope four entries": (lambda: edit(positions=axes_positions(4), mrope_section=[8, 8, 8, 8]), "mrope_section must have 2 or 3 entries"),
    "mrope negative entry": (lambda: edit(positions=axes_positions(2), mrope_section=[40, -8]), "mrope_section entries must be non-negative"),
    "mrope huge entries": (lambda: edit(positions=axes_positions(3), mrope_section=[2**62, 2**62, 2**62 + 32]), "mrope_section entry 4611686018427387904 exceeds rotary_dim / 2 (32)"),
    "mrope sum": (lambda: edit(positions=axes_positions(3), mrope_section=[8, 8, 8]), "mrope_section [8, 8, 8] sums to 24 but rotary_dim / 2 is 32"),
    "mrope sum computed": (lambda: edit(cos=None, sin=None, inv_freq=torch.ones(24), positions=axes_positions(3), mrope_section=[8, 8, 16]), "sums to 32 but rotary_dim / 2 is 24"),
    "mrope without positions": (lambda: edit(positions=None, mrope_section=[16, 16]), "mrope_section needs positions of shape [2, tokens]"),
    "mrope axes mismatch": (lambda: edit(positions=axes_positions(3), mrope_section=[16, 16]), "positions must be [axes, tokens] = [2, 5] for an mrope_section of 2 entries, got [3, 5]"),
    "mrope one-axis positions": (lambda: edit(mrope_section=[16, 8, 8]), "positions must be [axes, tokens] = [3, 5]"),
    "mrope positions tokens": (lambda: edit(positions=torch.zeros(3, 6, dtype=torch.int64), mrope_section=[16, 8, 8]), "positions must be [axes, tokens] = [3, 5]"),
    "mrope positions strided": (lambda: edit(positions=torch.zeros(5, 3, dtype=torch.int64).T, mrope_section=[16, 8, 8]), "positions must be contiguous along the tokens"),
    "mrope positions dtype": (lambda: edit(positions=torch.zeros(3, 5), mrope_section=[16, 8, 8]), "positions dtype must be int32 or int64"),
    "multi-axis positions without mrope_section": (lambda: edit(positions=axes_positions(3)), "multi-axis positions [axes, ...] need mrope_section"),
    "mrope_layout unknown": (lambda: edit(positions=axes_positions(3), mrope_section=[16, 8, 8], mrope_layout="Interleaved"), 'mrope_layout must be "contiguous" (Qwen2-VL\'s mrope_section) or "interleaved" (Qwen3-VL), got "Interleaved"'),
    "mrope_layout without sections": (lambda: edit(mrope_layout="interleaved"), 'mrope_layout "interleaved" applies to multi-axis positions: pass mrope_section too'),
    # packed sequences (THD): base_args has 5 tokens
    "cu_seqlens with positions": (lambda: edit(cu_seqlens=cu(0, 2, 5)), "pass positions or cu_seqlens, not both"),
    "cu_seqlens with 4-D q": (lambda: edit(q=torch.randn(1, 5, 4, 64).half(), k=None, positions=None, cu_seqlens=cu(0, 5)), "cu_seqlens describes packed [total_tokens, heads, head_dim] (THD) tensors"),
    "cu_seqlens with mrope": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), mrope_section=[16, 16]), "mrope_section needs a positions array per axis"),
    "cu_seqlens int64": (lambda: edit(positions=None, cu_seqlens=torch.tensor([0, 5])), "cu_seqlens dtype must be int32, got Long"),
    "cu_seqlens 2-D": (lambda: edit(positions=None, cu_seqlens=cu(0, 5).view(1, 2)), "cu_seqlens must be 1-D with batch + 1 >= 2 entries"),
    "cu_seqlens one entry": (lambda: edit(positions=None, cu_seqlens=cu(0)), "cu_seqlens must be 1-D with batch + 1 >= 2 entries"),
    "cu_seqlens strided": (lambda: edit(positions=None, cu_seqlens=cu(0, 9, 2, 9, 5)[::2]), "cu_seqlens must be contiguous"),
    "offsets without cu_seqlens": (lambda: edit(seqlen_offsets=torch.zeros(1, dtype=torch.int32)), "seqlen_offsets (one start position per sequence) needs cu_seqlens"),
    "offsets dtype": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), seqlen_offsets=torch.zeros(1)), "seqlen_offsets dtype must be int32 or int64"),
    "offsets count": (lambda: edit(positions=None, cu_seqlens=cu(0, 2, 5), seqlen_offsets=torch.zeros(3, dtype=torch.int32)), "seqlen_offsets must be [batch] = [2]"),
    "offsets strided": (lambda: edit(positions=None, cu_seqlens=cu(0, 2, 5), seqlen_offsets=torch.zeros(4, dtype=torch.int64)[::2]), "seqlen_offsets must be contiguous"),
    "cp without cu_seqlens": (lambda: edit(cp_size=2), "cp_size, cp_rank and cp_layout apply to packed sequences"),
    "cp_layout without cu_seqlens": (lambda: edit(cp_layout="contiguous"), "cp_size, cp_rank and cp_layout apply to packed sequences"),
    "cp_size zero": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), cp_size=0), "cp_size must be >= 1, got 0"),
    "cp_rank past cp_size": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), cp_size=2, cp_rank=2), "cp_rank must be in [0, cp_size) = [0, 2), got 2"),
    "cp_rank negative": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), cp_size=2, cp_rank=-1), "cp_rank must be in [0, cp_size)"),
    "cp_layout unknown": (lambda: edit(positions=None, cu_seqlens=cu(0, 5), cp_layout="zigzag"), 'cp_layout must be "load_balanced"'),
}


def cu(*values):
    return torch.tensor(values, dtype=torch.int32)


def test_packed_sequences_need_no_row_per_token():
    # Positions come from cu_seqlens, so 3 table rows serve 5 tokens (3 sequences).
    for error in call_both(edit(positions=None, cu_seqlens=cu(0, 2, 4, 5), cos=torch.randn(3, 32), sin=torch.randn(3, 32),
                                seqlen_offsets=torch.zeros(3, dtype=torch.int64), cp_size=1)):
        assert isinstance(error, NotImplementedError), f"{type(error).__name__}: {error}"


@pytest.mark.parametrize("cu_seqlens, tokens, cp_size, layout, match", [
    ([1, 5], 5, 1, "load_balanced", "cu_seqlens[0] must be 0"),
    ([0, 6, 5], 5, 1, "load_balanced", "cu_seqlens decreases at sequence 1 (6 -> 5)"),
    ([0, 4], 5, 1, "load_balanced", "cu_seqlens ends at 4 but the tokens are 5"),
    ([0, 6, 8], 4, 2, "load_balanced", "sequence 0 has length 6, not a multiple of 4"),
    ([0, 6, 8], 3, 2, "contiguous", "cu_seqlens ends at 8 but the tokens are 3 x cp_size 2"),
    ([0, 3, 8], 4, 2, "contiguous", "sequence 0 has length 3, not a multiple of 2"),
    ([0, 8], 4, 2, "zigzag", "cp_layout must be"),
    ([0, 8], 4, 0, "contiguous", "cp_size must be >= 1"),
])
def test_check_cu_seqlens_names_the_broken_rule(cu_seqlens, tokens, cp_size, layout, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        rope_cuda.check_cu_seqlens(torch.tensor(cu_seqlens, dtype=torch.int32), tokens, cp_size, layout)


def test_check_cu_seqlens_accepts_valid_arrays():
    rope_cuda.check_cu_seqlens(cu(0, 4, 4, 12), 12)
    rope_cuda.check_cu_seqlens(cu(0, 4, 4, 12), 3, 4, "contiguous")
    rope_cuda.check_cu_seqlens(cu(0, 8, 8, 24), 6, 4, "load_balanced")
    with pytest.raises(ValueError, match="1-D int32"):
        rope_cuda.check_cu_seqlens(torch.tensor([0, 4]), 4)


def axes_positions(axes, tokens=5, rows=16):
    return torch.randint(0, rows, (axes, tokens))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_argument(case):
    make, match = CASES[case]
    expect_value_error(make(), match)


def test_overlapping_rows_rejected_in_place_accepted_as_input():
    # Heads 16 elements apart overlap: fine to read (a broadcast input), not to write in place.
    q = torch.randn(400).half().as_strided((5, 4, 64), (64, 16, 1))
    cos = torch.randn(16, 32)
    with pytest.raises(ValueError, match="q.y strides make output rows overlap"):
        torch.ops.rope_cuda.rope_(q, None, None, cos, cos.clone())
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        torch.ops.rope_cuda.rope(q, None, None, cos, cos.clone())


def test_q_and_k_overlap():
    qk = torch.randn(5, 4, 64).half()
    with pytest.raises(ValueError, match="k overlaps q"):
        torch.ops.rope_cuda.rope_(qk, qk[:, 1:3], None, torch.randn(16, 32), torch.randn(16, 32))
    # Disjoint head ranges of one fused buffer are fine.
    with pytest.raises(NotImplementedError):
        torch.ops.rope_cuda.rope_(qk[:, :2], qk[:, 2:], None, torch.randn(16, 32), torch.randn(16, 32))


def test_four_d_table_batch_mismatch():
    q = torch.randn(3, 5, 4, 64)
    cos = torch.randn(2, 5, 32)
    with pytest.raises(ValueError, match="cos has 2 tables but q has a batch of 3"):
        torch.ops.rope_cuda.rope(q, None, cos=cos, sin=cos.clone())


def test_four_d_positions_shape():
    q = torch.randn(3, 5, 4, 64)
    with pytest.raises(ValueError, match=r"positions must have q's leading shape \[3, 5\]"):
        torch.ops.rope_cuda.rope(q, None, torch.zeros(15, dtype=torch.int64), inv_freq=torch.ones(32))


def test_inplace_refuses_tensors_that_require_grad():
    q = torch.randn(5, 4, 64, requires_grad=True)
    with pytest.raises(ValueError, match="apply_rope_ is not differentiable"):
        rope_cuda.apply_rope_(q, inv_freq=torch.ones(32))


def test_vllm_refuses_a_copying_view():
    # [batch, seq, heads * head_size] whose batch and seq cannot merge into one token dimension.
    query = torch.randn(5, 2, 4 * 64).transpose(0, 1)
    with pytest.raises(ValueError, match="cannot be viewed"):
        vllm.rotary_embedding(torch.zeros(2, 5, dtype=torch.int64), query, None, 64, torch.randn(16, 64), True)


def test_module_arguments():
    with pytest.raises(ValueError, match="inv_freq must be 1-D and non-empty"):
        rope_cuda.RotaryEmbedding(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mrope_section \[16, 24, 20\] must sum to the number of frequencies \(64\)"):
        rope_cuda.RotaryEmbedding(torch.ones(64), mrope_section=[16, 24, 20])
    with pytest.raises(ValueError, match="max_positions must be positive"):
        rope_cuda.RotaryEmbedding(torch.ones(4), max_positions=0)
    with pytest.raises(ValueError, match="rope_type 'mrope' is not supported"):
        rope_cuda.inv_freq_from_config({"head_dim": 64, "rope_parameters": {"rope_type": "mrope", "rope_theta": 1e4}})
    with pytest.raises(ValueError, match="rotary dimension 0 is too small"):
        rope_cuda.inv_freq_from_config({"head_dim": 64, "partial_rotary_factor": 0.0})


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("layout", ["contiguous", "interleaved"])
def test_multi_axis_arguments_reach_the_device_check(dtype, layout):
    q, k = torch.randn(2, 7, 4, 128).bfloat16(), torch.randn(2, 7, 1, 128).bfloat16()
    cos = torch.randn(32, 64)
    valid = [
        (torch.randint(0, 32, (3, 2, 7), dtype=dtype), [16, 24, 24]),  # [axes, batch, seq]
        (torch.arange(7, dtype=dtype).expand(3, 2, 7), [24, 20, 20]),  # text-only ids, axis/batch strides 0
        (torch.randint(0, 32, (2, 2, 7), dtype=dtype), [32, 32]),  # two axes (2D vision)
        (torch.randint(0, 32, (3, 2, 10), dtype=dtype)[..., :7], [16, 24, 24]),  # rows 10 apart: one launch per batch
    ]
    for positions, sections in valid:
        for fn in (rope_cuda.apply_rope, rope_cuda.apply_rope_):
            with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
                fn(q, k, positions=positions, cos=cos, sin=cos.clone(), mrope_section=sections, mrope_layout=layout)
    with pytest.raises(NotImplementedError):  # 3-D q: [axes, tokens]; computed cos/sin
        rope_cuda.apply_rope(q[0], k[0], positions=torch.zeros(3, 7, dtype=dtype), inv_freq=torch.ones(64),
                             mrope_section=(16, 24, 24))


def test_multi_axis_four_d_positions_shape():
    q = torch.randn(3, 5, 4, 64)
    with pytest.raises(ValueError, match=r"positions must be \[axes, batch, seq\] = \[3, 3, 5\]"):
        rope_cuda.apply_rope(q, positions=torch.zeros(3, 15, dtype=torch.int64), inv_freq=torch.ones(32),
                             mrope_section=[16, 8, 8])


def test_python_layer_type_errors():
    q, cos = torch.randn(5, 4, 64), torch.randn(16, 32)
    positions = torch.zeros(3, 5, dtype=torch.int64)
    with pytest.raises(TypeError, match="mrope_layout must be a string"):
        rope_cuda.apply_rope(q, positions=positions, cos=cos, sin=cos, mrope_section=[16, 8, 8], mrope_layout=True)
    with pytest.raises(TypeError, match="mrope_section must be a list of ints"):
        rope_cuda.apply_rope(q, positions=positions, cos=cos, sin=cos, mrope_section=32)
    with pytest.raises(TypeError, match="mrope_section must be a list of ints"):
        rope_cuda.apply_rope_(q, positions=positions, cos=cos, sin=cos, mrope_section=[16.0, 8, 8])


def test_in_place_outputs_that_share_memory_are_rejected():
    # x.expand(B, ...) gives B views of the same rows: rotating it in place would rotate them B times.
    q = torch.randn(1, 5, 4, 64).half().expand(3, 5, 4, 64)
    k = torch.randn(3, 5, 2, 64).half()
    cos = torch.randn(16, 32)
    with pytest.raises(ValueError, match="q has elements that share memory"):
        torch.ops.rope_cuda.rope_(q, k, None, cos, cos.clone())
    with pytest.raises(ValueError, match="k has elements that share memory"):
        torch.ops.rope_cuda.rope_(k, q[:, :, :2], None, cos, cos.clone())
    # As an input of the functional op, an expanded tensor is only read: accepted.
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        torch.ops.rope_cuda.rope(q, k, None, cos, cos.clone())


def test_vllm_positions_must_match_the_tokens():
    query, key = torch.randn(4, 8 * 64).half(), torch.randn(4, 2 * 64).half()
    cache = torch.randn(16, 64)
    with pytest.raises(ValueError, match="must have the same number of tokens"):
        vllm.rotary_embedding(torch.zeros(3, dtype=torch.int64), query, key, 64, cache, True)
    with pytest.raises(ValueError, match="key of shape"):
        vllm.rotary_embedding(torch.zeros(4, dtype=torch.int64), query, key[:2], 64, cache, True)
    with pytest.raises(ValueError, match="must have the same batch_size and seq_len"):
        vllm.rotary_embedding(torch.zeros(2, 3, dtype=torch.int64), query.view(2, 2, -1), None, 64, cache, True)
    with pytest.raises(ValueError, match=r"positions must have shape \[num_tokens\] or \[batch_size, seq_len\]"):
        vllm.rotary_embedding(torch.zeros(1, 2, 2, dtype=torch.int64), query, key, 64, cache, True)
    # Matching shapes reach the op.
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        vllm.rotary_embedding(torch.zeros(4, dtype=torch.int64), query, key, 64, cache, True)
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        vllm.rotary_embedding(torch.zeros(2, 2, dtype=torch.int64), query.view(2, 2, -1), key.view(2, 2, -1), 64,
                              cache, True)


def qk_norm_call(**changes):
    a = dict(q=torch.randn(5, 4, 64).half(), k=torch.randn(5, 2, 64).half(), q_weight=torch.ones(64).half(),
             k_weight=torch.ones(64).half(), eps=1e-6, weight_one_plus=False, positions=torch.arange(5),
             cos=torch.randn(16, 32), sin=torch.randn(16, 32))
    a.update(changes)
    return lambda: rope_cuda.apply_qk_norm_rope_(a.pop("q"), a.pop("k"), **a)


@pytest.mark.parametrize("changes, match", [
    (dict(q_weight=None), "q_weight is required"),
    (dict(k_weight=torch.ones(64)), "k_weight dtype must be q's (Half), got Float"),
    (dict(k_weight=torch.ones(2, 64).half()), "k_weight must be [head_dim] = [64]"),
    (dict(k=None), "k_weight is given but its tensor has no heads"),
    (dict(eps=-1.0), "qk-norm eps must be finite and non-negative"),
    (dict(positions=torch.arange(6)), "positions must have q's leading shape"),
])
def test_qk_norm_bad_argument(changes, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        qk_norm_call(**changes)()


def test_qk_norm_valid_arguments_reach_the_device_check():
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        qk_norm_call()()


def append_call(**changes):
    t, hq, hk, d = 5, 4, 2, 64
    a = dict(q=torch.randn(t, hq, d).bfloat16(), k=torch.randn(t, hk, d).bfloat16(), v=torch.randn(t, hk, d).bfloat16(),
             k_cache=torch.zeros(3, 16, hk, d).bfloat16(), v_cache=torch.zeros(3, 16, hk, d).bfloat16(),
             slot_mapping=torch.arange(t), positions=torch.arange(t), cos_sin_cache=torch.randn(32, d))
    a.update(changes)
    tensors = [a.pop(n) for n in ("q", "k", "v", "k_cache", "v_cache", "slot_mapping")]
    return lambda: rope_cuda.apply_rope_and_cache_(*tensors, **a)


def fp8_caches(dtype=torch.uint8):
    return dict(kv_cache_dtype="fp8", k_cache=torch.zeros(3, 16, 2, 64, dtype=dtype),
                v_cache=torch.zeros(3, 16, 2, 64, dtype=dtype))


@pytest.mark.parametrize("changes, match", [
    (dict(k_cache=torch.zeros(3, 16, 2, 64)), 'k_cache dtype must be q\'s (BFloat16) with kv_cache_dtype "auto", got Float'),
    (dict(kv_cache_dtype="int8"), 'kv_cache_dtype must be "auto", "fp8" or "fp8_e4m3", got "int8"'),
    (dict(kv_cache_dtype="fp8"), "k_cache dtype must be float8_e4m3fn or uint8"),
    (dict(fp8_caches(), k_scale=0.0), "k_scale must be in [2^-64, 2^64]"),
    (dict(cache_layout="HND"), "does not hold k's 2 heads of 64 (cache_layout HND)"),
    (dict(cache_layout="NDH"), 'cache_layout must be "NHD" (vLLM) or "HND" (FlashInfer), got "NDH"'),
    (dict(k_cache=torch.zeros(3, 16, 2, 64, 1).bfloat16(), v_cache=torch.zeros(3, 16, 2, 64, 1).bfloat16()),
     "k_cache must be [num_blocks, block_size, kv_heads, head_dim]"),
    (dict(v_cache=torch.zeros(4, 16, 2, 64).bfloat16()), "k_cache and v_cache must have the same shape"),
    (dict(slot_mapping=torch.arange(4)), "slot_mapping must be [num_tokens] = [5]"),
    (dict(slot_mapping=torch.arange(5.0)), "slot_mapping dtype must be int32 or int64"),
    (dict(v=torch.randn(5, 4, 64).bfloat16()), "v must be shaped like k [5, 2, 64]"),
    (dict(v=torch.randn(5, 2, 64)), "v dtype must be k's (BFloat16)"),
    (dict(q=torch.randn(1, 5, 4, 64).bfloat16(), k=torch.randn(1, 5, 2, 64).bfloat16(),
          positions=torch.arange(5).view(1, 5)), "the KV-cache append takes q [tokens, heads, head_dim]"),
])
def test_append_bad_argument(changes, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        append_call(**changes)()


@pytest.mark.parametrize("changes", [dict(), fp8_caches(), fp8_caches(torch.float8_e4m3fn),
                                     dict(k_cache=torch.zeros(48, 2, 64).bfloat16(), v_cache=torch.zeros(48, 2, 64).bfloat16()),
                                     dict(k_cache=torch.zeros(3, 2, 16, 64).bfloat16(), v_cache=torch.zeros(3, 2, 16, 64).bfloat16(),
                                          cache_layout="HND"),
                                     dict(k_write_back=False), dict(slot_mapping=torch.arange(5, dtype=torch.int32))])
def test_append_valid_arguments_reach_the_device_check(changes):
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        append_call(**changes)()
