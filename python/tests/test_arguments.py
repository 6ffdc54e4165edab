"""Every bad argument gets a ValueError with its reason, before anything runs.

The ops' CPU kernels run every check (the binding's and rope::validate's) and then refuse the
call with NotImplementedError, so these tests need no GPU; on a GPU machine the same cases also
run against the CUDA kernels (test_errors_gpu.py) to show nothing is written there.
"""

import math

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
    "non-finite scaling": (lambda: edit(attention_scaling=math.nan), "attention_scaling is not finite"),
    "rows without positions": (lambda: edit(positions=None, cos=torch.randn(3, 32), sin=torch.randn(3, 32)), "fewer rows than tokens and no positions"),
}


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
    with pytest.raises(ValueError, match="max_positions must be positive"):
        rope_cuda.RotaryEmbedding(torch.ones(4), max_positions=0)
    with pytest.raises(ValueError, match="rope_type 'mrope' is not supported"):
        rope_cuda.inv_freq_from_config({"head_dim": 64, "rope_parameters": {"rope_type": "mrope", "rope_theta": 1e4}})
    with pytest.raises(ValueError, match="rotary dimension 0 is too small"):
        rope_cuda.inv_freq_from_config({"head_dim": 64, "partial_rotary_factor": 0.0})
