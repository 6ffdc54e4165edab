"""rope_cuda.flashinfer and rope_cuda.sglang: FlashInfer's and SGLang's RoPE contracts.

The references are written here in float64 from the peers' documented semantics (neither peer is
installed): FlashInfer's frequency rules (``rope_theta ** (-2i / rotary_dim) / rope_scale``, and its
Llama 3.1 smoothing weight ``clamp(f * old_context_len / (2 pi (high - low)) - low / (high - low), 0, 1)``),
``[cos | sin]`` cache rows, indptr / offsets positions, and SGLang's KV-cache write
``k_buffer[cache_loc[i]] = rotated key[i]``, ``v_buffer[cache_loc[i]] = value[i]``.
The argument checks, signatures and frequency rules run without a GPU.
"""

import dataclasses
import inspect
import itertools
import math
import re

import pytest
import torch

from rope_cuda import flashinfer, sglang
from reference import assert_close_rel, rotate

DEV = "cuda"
gpu = pytest.mark.gpu
CACHE_INPLACE = {"flashinfer": flashinfer.apply_rope_with_cos_sin_cache_inplace,
                 "sglang": sglang.apply_rope_with_cos_sin_cache_inplace}


# ----------------------------------------------------------------------------------------------
# float64 references
# ----------------------------------------------------------------------------------------------

def flashinfer_freq(rot, rope_scale=1.0, rope_theta=1e4):
    """FlashInfer's frequencies: theta ** (-2i / rot), times 1 / rope_scale."""
    i = torch.arange(rot // 2, dtype=torch.float64)
    return rope_theta ** (-2 * i / rot) / rope_scale


def flashinfer_llama31_freq(rot, rope_scale=8.0, rope_theta=5e5, low=1.0, high=4.0, old_context_len=8192.0):
    """FlashInfer's Llama 3.1 frequencies: smooth_a = old / (2 pi high - 2 pi low),
    smooth_b = -1 / (high / low - 1), weight clamp(f * smooth_a + smooth_b, 0, 1) of the unscaled f."""
    f = flashinfer_freq(rot, 1.0, rope_theta)
    smooth = (f * (old_context_len / (2 * math.pi * high - 2 * math.pi * low)) - 1.0 / (high / low - 1.0)).clamp(0, 1)
    return (1 - smooth) * (f / rope_scale) + smooth * f


def cache_for(rot, rows, device=DEV):
    angles = torch.arange(rows, dtype=torch.float64)[:, None] * flashinfer_freq(rot)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float().to(device)


def rotate_by_cache(x, positions, cache, interleaved):
    """x [nnz, heads, D] rotated by the cache rows at positions (float64)."""
    half = cache.shape[-1] // 2
    rows = cache.double()[positions.long()]
    return rotate(x, rows[:, None, :half], rows[:, None, half:], interleaved=interleaved)


def rotate_by_freq(x, positions, inv_freq, interleaved):
    angles = positions.double()[:, None] * inv_freq.double().to(positions.device)
    return rotate(x, angles.cos()[:, None], angles.sin()[:, None], interleaved=interleaved)


def fused_qkv(tokens, heads, kv_heads, d, dtype, device=DEV):
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * d, device=device).to(dtype)
    return qkv, qkv[:, : heads * d], qkv[:, heads * d: (heads + kv_heads) * d], qkv[:, (heads + kv_heads) * d:]


# ----------------------------------------------------------------------------------------------
# signatures and frequency rules (no GPU)
# ----------------------------------------------------------------------------------------------

BACKEND = ("backend", "cuda")
POS_IDS = ["q", "k", "pos_ids", ("rotary_dim", None), ("interleave", False)]
RAGGED = ["q", "k", "indptr", "offsets", ("rotary_dim", None), ("interleave", False)]
LLAMA31 = [("rope_scale", 8), ("rope_theta", 5e5), ("low_freq_factor", 1), ("high_freq_factor", 4),
           ("old_context_len", 8192), BACKEND]
CACHE = ["positions", "query", "key", "head_size", "cos_sin_cache", ("is_neox", True)]
SIGNATURES = {
    (flashinfer, "apply_rope_with_cos_sin_cache"): CACHE + [BACKEND],
    (flashinfer, "apply_rope_with_cos_sin_cache_inplace"): CACHE + [BACKEND],
    (flashinfer, "apply_rope_pos_ids"): POS_IDS + [("rope_scale", 1), ("rope_theta", 1e4), BACKEND],
    (flashinfer, "apply_rope_pos_ids_inplace"): POS_IDS + [("rope_scale", 1), ("rope_theta", 1e4), BACKEND],
    (flashinfer, "apply_llama31_rope_pos_ids"): POS_IDS + LLAMA31,
    (flashinfer, "apply_llama31_rope_pos_ids_inplace"): POS_IDS + LLAMA31,
    (flashinfer, "apply_rope"): RAGGED + [("rope_scale", 1), ("rope_theta", 1e4), BACKEND],
    (flashinfer, "apply_rope_inplace"): RAGGED + [("rope_scale", 1), ("rope_theta", 1e4), BACKEND],
    (flashinfer, "apply_llama31_rope"): RAGGED + LLAMA31,
    (flashinfer, "apply_llama31_rope_inplace"): RAGGED + LLAMA31,
    (sglang, "apply_rope_with_cos_sin_cache_inplace"): CACHE + [("fused_set_kv_buffer_arg", None),
                                                                ("enable_pdl", None)],
}


@pytest.mark.parametrize("module, name", list(SIGNATURES), ids=lambda x: getattr(x, "__name__", x))
def test_peer_signature(module, name):
    expected = [(p, inspect.Parameter.empty) if isinstance(p, str) else p for p in SIGNATURES[(module, name)]]
    params = inspect.signature(getattr(module, name)).parameters.values()
    assert [(p.name, p.default) for p in params] == expected
    assert all(p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)


def test_fused_set_kv_buffer_arg_fields():
    fields = [(f.name, f.default) for f in dataclasses.fields(sglang.FusedSetKVBufferArg)]
    assert fields == [(n, dataclasses.MISSING) for n in ("value", "k_buffer", "v_buffer", "k_scale", "v_scale",
                                                          "cache_loc")]


@pytest.mark.parametrize("rot, rope_scale, rope_theta", [(128, 1, 1e4), (64, 4, 5e5), (256, 0.5, 1e6), (2, 1, 1e4)])
def test_frequency_rule(rot, rope_scale, rope_theta):
    inv_freq = flashinfer._inv_freq(rot, rope_scale, rope_theta)
    assert inv_freq.dtype == torch.float32 and inv_freq.shape == (rot // 2,)
    torch.testing.assert_close(inv_freq.double(), flashinfer_freq(rot, rope_scale, rope_theta), rtol=2e-6, atol=0)


@pytest.mark.parametrize("rot, params", [(128, {}), (64, dict(rope_scale=32, rope_theta=5e5, low=1, high=4,
                                                                  old_context_len=4096)),
                                         (128, dict(rope_scale=4, rope_theta=1e4, low=2, high=8,
                                                    old_context_len=2048))])
def test_llama31_frequency_rule(rot, params):
    names = dict(low="low_freq_factor", high="high_freq_factor")
    inv_freq = flashinfer._llama31_inv_freq(rot, **{names.get(n, n): v for n, v in params.items()})
    expected = flashinfer_llama31_freq(rot, **params)
    torch.testing.assert_close(inv_freq.double(), expected, rtol=2e-6, atol=0)
    plain = flashinfer_freq(rot, 1.0, params.get("rope_theta", 5e5))
    ratio = plain / expected
    scale = params.get("rope_scale", 8)
    blended = (ratio > 1 + 1e-9) & (ratio < scale - 1e-9)
    assert blended.any() and (ratio < 1 + 1e-9).any() and (ratio > scale - 1e-9).any()  # all three bands


# ----------------------------------------------------------------------------------------------
# argument errors (no GPU: every check runs before the op, or in the op's CPU kernel)
# ----------------------------------------------------------------------------------------------

def cpu_cache_args(tokens=5, heads=4, kv_heads=2, d=64, dtype=torch.bfloat16):
    _, query, key, value = fused_qkv(tokens, heads, kv_heads, d, dtype, device="cpu")
    return dict(positions=torch.arange(tokens), query=query, key=key, head_size=d,
                cos_sin_cache=cache_for(d, 16, device="cpu")), value


CACHE_ERRORS = {
    "cache bf16": (dict(cos_sin_cache=torch.zeros(16, 64, dtype=torch.bfloat16)), "cos_sin_cache should be float32"),
    "cache float64": (dict(cos_sin_cache=torch.zeros(16, 64, dtype=torch.float64)), "cos_sin_cache should be float32"),
    "no key": (dict(key=None), "key is required"),
    "key tokens": (dict(key=torch.zeros(6, 128, dtype=torch.bfloat16)), "same number of tokens"),
    "query 1-D": (dict(query=torch.zeros(5 * 256, dtype=torch.bfloat16)), "query must be [nnz, num_q_heads"),
    "partial heads": (dict(query=torch.zeros(5, 100, dtype=torch.bfloat16)), "does not hold whole heads"),
    "not a view": (dict(query=torch.zeros(5, 2, 256, dtype=torch.bfloat16)[:, :, :128]), "cannot be viewed"),
    "head_size 0": (dict(head_size=0), "head_size must be positive"),
    "head_size float": (dict(head_size=64.0), "head_size must be an int"),
    "positions count": (dict(positions=torch.arange(6)), "one position per token"),
    # the op's own checks (CPU kernel)
    "positions float": (dict(positions=torch.zeros(5)), "positions dtype must be int32 or int64"),
    "cache wider than head": (dict(cos_sin_cache=torch.zeros(16, 128)), "larger than head_dim"),
    "cache odd width": (dict(cos_sin_cache=torch.zeros(16, 63)), "an even width >= 2"),
}


@pytest.mark.parametrize("name", ["flashinfer", "flashinfer functional", "sglang"])
@pytest.mark.parametrize("case", list(CACHE_ERRORS))
def test_cache_argument_errors(name, case):
    fn = flashinfer.apply_rope_with_cos_sin_cache if name == "flashinfer functional" else CACHE_INPLACE[name]
    args, _ = cpu_cache_args()
    changes, match = CACHE_ERRORS[case]
    args.update(changes)
    before = args["query"].clone()
    with pytest.raises(ValueError, match=re.escape(match)):
        fn(**args)
    assert torch.equal(args["query"], before)


@pytest.mark.parametrize("name", ["flashinfer", "flashinfer functional", "sglang", "sglang fused"])
def test_valid_cache_arguments_reach_the_device_check(name):
    args, value = cpu_cache_args()
    if name == "sglang fused":
        kv = torch.zeros(8, 2 * 64, dtype=torch.bfloat16)
        args["fused_set_kv_buffer_arg"] = sglang.FusedSetKVBufferArg(value, kv, kv.clone(), None, None,
                                                                     torch.arange(5))
    fn = flashinfer.apply_rope_with_cos_sin_cache if name == "flashinfer functional" else \
        CACHE_INPLACE[name.split()[0]]
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        fn(**args)


def kv_arg(tokens=5, kv_heads=2, d=64, slots=8, dtype=torch.bfloat16, **changes):
    fields = dict(value=torch.zeros(tokens, kv_heads * d, dtype=dtype),
                  k_buffer=torch.zeros(slots, kv_heads * d, dtype=dtype),
                  v_buffer=torch.zeros(slots, kv_heads * d, dtype=dtype), k_scale=None, v_scale=None,
                  cache_loc=torch.arange(tokens))
    fields.update(changes)
    return sglang.FusedSetKVBufferArg(**fields)


KV_ERRORS = {
    "k_scale": (dict(k_scale=1.0), "k_scale is not yet supported"),
    "v_scale": (dict(v_scale=0.5), "v_scale is not yet supported"),
    "cache_loc int32": (dict(cache_loc=torch.arange(5, dtype=torch.int32)), "cache_loc must be an int64 tensor"),
    "cache_loc count": (dict(cache_loc=torch.arange(4)), r"cache_loc must be \(nnz\) = \(5\)"),
    "cache_loc 2-D": (dict(cache_loc=torch.arange(5).view(5, 1)), r"cache_loc must be \(nnz\)"),
    "fp8 k_buffer": (dict(k_buffer=torch.zeros(8, 128, dtype=torch.float8_e4m3fn)), "converts nothing"),
    "fp8 v_buffer": (dict(v_buffer=torch.zeros(8, 128, dtype=torch.float8_e5m2)), "converts nothing"),
    "fp16 value": (dict(value=torch.zeros(5, 128, dtype=torch.float16)), "value dtype"),
    "value tokens": (dict(value=torch.zeros(4, 128, dtype=torch.bfloat16)), "value of shape"),
    "value heads": (dict(value=torch.zeros(5, 192, dtype=torch.bfloat16)), "value has 3 heads"),
    "k_buffer heads": (dict(k_buffer=torch.zeros(8, 4, 64, dtype=torch.bfloat16)), "k_buffer has 4 heads"),
    "v_buffer partial heads": (dict(v_buffer=torch.zeros(8, 96, dtype=torch.bfloat16)), "does not hold whole heads"),
    "k_buffer 1-D": (dict(k_buffer=torch.zeros(8 * 128, dtype=torch.bfloat16)), "k_buffer must be"),
}


@pytest.mark.parametrize("case", list(KV_ERRORS))
def test_kv_write_argument_errors(case):
    args, _ = cpu_cache_args()
    changes, match = KV_ERRORS[case]
    arg = kv_arg(**changes)
    buffers = (arg.k_buffer.clone(), arg.v_buffer.clone())
    before = args["query"].clone(), args["key"].clone()
    with pytest.raises(ValueError, match=match):
        sglang.apply_rope_with_cos_sin_cache_inplace(**args, fused_set_kv_buffer_arg=arg)
    assert torch.equal(args["query"], before[0]) and torch.equal(args["key"], before[1])
    assert torch.equal(arg.k_buffer.view(torch.uint8), buffers[0].view(torch.uint8))
    assert torch.equal(arg.v_buffer.view(torch.uint8), buffers[1].view(torch.uint8))


def cpu_qk(tokens=5, heads=4, kv_heads=2, d=64):
    return torch.zeros(tokens, heads, d, dtype=torch.bfloat16), torch.zeros(tokens, kv_heads, d, dtype=torch.bfloat16)


POS_IDS_ERRORS = {
    "q 2-D": (dict(q=torch.zeros(5, 256, dtype=torch.bfloat16)), r"q must be \(nnz, num_heads, head_dim\)"),
    "k None": (dict(k=None), "k must be a tensor"),
    "k tokens": (dict(k=torch.zeros(6, 2, 64, dtype=torch.bfloat16)), "same nnz and head_dim"),
    "k head_dim": (dict(k=torch.zeros(5, 2, 32, dtype=torch.bfloat16)), "same nnz and head_dim"),
    "pos_ids count": (dict(pos_ids=torch.arange(4)), "one position per token"),
    "rotary_dim odd": (dict(rotary_dim=33), "rotary_dim must be even"),
    "rotary_dim too big": (dict(rotary_dim=128), r"rotary_dim must be even, >= 2 and <= head_dim \(64\)"),
    "rotary_dim float": (dict(rotary_dim=32.0), "rotary_dim must be an int or None"),
    "backend": (dict(backend="triton"), 'backend must be "cuda" or "cute-dsl"'),
    "rope_scale 0": (dict(rope_scale=0), "rope_scale must be finite and positive"),
    "rope_theta nan": (dict(rope_theta=math.nan), "rope_theta must be finite and positive"),
    "pos_ids float": (dict(pos_ids=torch.zeros(5)), "positions dtype must be int32 or int64"),  # the op's check
}

POS_IDS_FNS = ["apply_rope_pos_ids", "apply_rope_pos_ids_inplace", "apply_llama31_rope_pos_ids",
               "apply_llama31_rope_pos_ids_inplace"]


@pytest.mark.parametrize("fn", POS_IDS_FNS)
@pytest.mark.parametrize("case", list(POS_IDS_ERRORS))
def test_pos_ids_argument_errors(fn, case):
    q, k = cpu_qk()
    args = dict(q=q, k=k, pos_ids=torch.arange(5))
    changes, match = POS_IDS_ERRORS[case]
    args.update(changes)
    with pytest.raises(ValueError, match=match):
        getattr(flashinfer, fn)(**args)


@pytest.mark.parametrize("fn", ["apply_llama31_rope_pos_ids", "apply_llama31_rope_inplace"])
def test_llama31_factor_order(fn):
    q, k = cpu_qk()
    third = torch.arange(5) if "pos_ids" in fn else torch.tensor([0, 5], dtype=torch.int32)
    extra = () if "pos_ids" in fn else (torch.zeros(1, dtype=torch.int32),)
    with pytest.raises(ValueError, match="high_freq_factor .* must be larger than low_freq_factor"):
        getattr(flashinfer, fn)(q, k, third, *extra, low_freq_factor=4, high_freq_factor=4)


@pytest.mark.parametrize("fn", POS_IDS_FNS + ["apply_rope", "apply_rope_inplace", "apply_llama31_rope",
                                              "apply_llama31_rope_inplace"])
def test_valid_arguments_reach_the_device_check(fn):
    q, k = cpu_qk()
    if "pos_ids" in fn:
        args = (q, k, torch.arange(5, dtype=torch.int32))
    else:
        args = (q, k, torch.tensor([0, 2, 5], dtype=torch.int32), torch.tensor([0, 7], dtype=torch.int32))
    with pytest.raises(NotImplementedError, match="run on CUDA tensors"):
        getattr(flashinfer, fn)(*args, rotary_dim=32, backend="cute-dsl")


def test_ragged_op_checks_pass_through():
    q, k = cpu_qk()
    with pytest.raises(ValueError, match="cu_seqlens dtype must be int32"):
        flashinfer.apply_rope_inplace(q, k, torch.tensor([0, 5]), torch.zeros(1, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"seqlen_offsets must be \[batch\] = \[1\]"):
        flashinfer.apply_rope(q, k, torch.tensor([0, 5], dtype=torch.int32), torch.zeros(2, dtype=torch.int32))


# ----------------------------------------------------------------------------------------------
# cos_sin_cache on the GPU
# ----------------------------------------------------------------------------------------------

@gpu
@pytest.mark.parametrize("name", list(CACHE_INPLACE))
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("pos_dtype, three_d", [(torch.int64, False), (torch.int32, True)])
def test_cos_sin_cache_inplace(name, is_neox, rot, dtype, pos_dtype, three_d):
    tokens, heads, kv_heads, d, rows = 37, 8, 2, 128, 4096
    qkv, query, key, _ = fused_qkv(tokens, heads, kv_heads, d, dtype)
    before = qkv.clone().view(tokens, -1, d)
    if three_d:
        query, key = query.view(tokens, heads, d), key.view(tokens, kv_heads, d)
    positions = torch.randint(0, rows, (tokens,), device=DEV, dtype=pos_dtype)
    cache = cache_for(rot, rows)
    assert CACHE_INPLACE[name](positions, query, key, d, cache, is_neox) is None
    out = qkv.view(tokens, -1, d)
    ref = rotate_by_cache(before, positions, cache, interleaved=not is_neox)
    assert_close_rel(out[:, : heads + kv_heads], ref[:, : heads + kv_heads], dtype)
    assert torch.equal(out[:, heads + kv_heads:], before[:, heads + kv_heads:])  # v untouched


@gpu
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_cos_sin_cache_functional(is_neox, dtype):
    tokens, heads, kv_heads, d, rot, rows = 29, 4, 1, 128, 64, 512
    qkv, query, key, _ = fused_qkv(tokens, heads, kv_heads, d, dtype)
    before = qkv.clone()
    positions = torch.randint(0, rows, (tokens,), device=DEV)
    cache = cache_for(rot, rows)
    query_out, key_out = flashinfer.apply_rope_with_cos_sin_cache(positions, query, key, d, cache, is_neox)
    assert torch.equal(qkv, before)  # inputs untouched
    assert query_out.shape == query.shape and key_out.shape == key.shape and query_out.dtype == dtype
    for out, x in ((query_out, query), (key_out, key)):
        ref = rotate_by_cache(x.reshape(tokens, -1, d), positions, cache, interleaved=not is_neox)
        assert_close_rel(out.view(tokens, -1, d), ref, dtype)


# ----------------------------------------------------------------------------------------------
# pos_ids and indptr on the GPU (frequencies in the kernel)
# ----------------------------------------------------------------------------------------------

def run_qk(fn, inplace, q, k, *args, **kwargs):
    """Calls an in-place or functional FlashInfer function; returns (q_out, k_out)."""
    if inplace:
        assert fn(q, k, *args, **kwargs) is None
        return q, k
    q_before, k_before = q.clone(), k.clone()
    q_out, k_out = fn(q, k, *args, **kwargs)
    assert torch.equal(q, q_before) and torch.equal(k, k_before)  # inputs untouched
    assert q_out.shape == q.shape and k_out.shape == k.shape
    return q_out, k_out


@gpu
@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("rotary_dim, rope_scale, rope_theta", [(None, 1, 1e4), (64, 4, 5e5)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("pos_dtype", [torch.int32, torch.int64])
def test_pos_ids(inplace, interleave, rotary_dim, rope_scale, rope_theta, dtype, pos_dtype):
    tokens, heads, kv_heads, d = 50, 8, 2, 128
    qkv, _, _, _ = fused_qkv(tokens, heads, kv_heads, d, dtype)
    heads3 = qkv.view(tokens, -1, d)
    before = heads3.clone()
    q, k = heads3[:, :heads], heads3[:, heads: heads + kv_heads]
    pos_ids = torch.randint(0, 8192, (tokens,), device=DEV, dtype=pos_dtype)
    fn = flashinfer.apply_rope_pos_ids_inplace if inplace else flashinfer.apply_rope_pos_ids
    q_out, k_out = run_qk(fn, inplace, q, k, pos_ids, rotary_dim, interleave, rope_scale, rope_theta)
    inv_freq = flashinfer._inv_freq(rotary_dim or d, rope_scale, rope_theta)  # checked by test_frequency_rule
    ref = rotate_by_freq(before, pos_ids, inv_freq, interleaved=interleave)
    assert_close_rel(q_out, ref[:, :heads], dtype)
    assert_close_rel(k_out, ref[:, heads: heads + kv_heads], dtype)
    assert torch.equal(heads3[:, heads + kv_heads:], before[:, heads + kv_heads:])  # v untouched


@gpu
@pytest.mark.parametrize("inplace", [True, False])
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_llama31_pos_ids(inplace, interleave, dtype):
    tokens, heads, kv_heads, d = 40, 4, 2, 128
    q = torch.randn(tokens, heads, d, device=DEV).to(dtype)
    k = torch.randn(tokens, kv_heads, d, device=DEV).to(dtype)
    q_in, k_in = q.clone(), k.clone()
    pos_ids = torch.randint(0, 131072, (tokens,), device=DEV)
    fn = flashinfer.apply_llama31_rope_pos_ids_inplace if inplace else flashinfer.apply_llama31_rope_pos_ids
    q_out, k_out = run_qk(fn, inplace, q, k, pos_ids, interleave=interleave)
    inv_freq = flashinfer._llama31_inv_freq(d)  # FlashInfer's defaults; checked by test_llama31_frequency_rule
    assert_close_rel(q_out, rotate_by_freq(q_in, pos_ids, inv_freq, interleave), dtype)
    assert_close_rel(k_out, rotate_by_freq(k_in, pos_ids, inv_freq, interleave), dtype)


@gpu
@pytest.mark.parametrize("fn_name", ["apply_rope_inplace", "apply_rope", "apply_llama31_rope_inplace",
                                     "apply_llama31_rope"])
def test_ragged_indptr_offsets(fn_name):
    lengths, offsets = [5, 0, 12, 13], [3, 0, 100, 7000]
    tokens, heads, kv_heads, d, rot = sum(lengths), 4, 1, 128, 96
    indptr = torch.tensor([0, *itertools.accumulate(lengths)], dtype=torch.int32, device=DEV)
    offsets_t = torch.tensor(offsets, dtype=torch.int32, device=DEV)
    positions = torch.cat([torch.arange(n) + o for n, o in zip(lengths, offsets)]).to(DEV)
    q = torch.randn(tokens, heads, d, device=DEV).bfloat16()
    k = torch.randn(tokens, kv_heads, d, device=DEV).bfloat16()
    q_in, k_in = q.clone(), k.clone()
    llama31 = "llama31" in fn_name
    q_out, k_out = run_qk(getattr(flashinfer, fn_name), fn_name.endswith("_inplace"), q, k, indptr, offsets_t, rot)
    inv_freq = flashinfer._llama31_inv_freq(rot) if llama31 else flashinfer._inv_freq(rot)
    assert_close_rel(q_out, rotate_by_freq(q_in, positions, inv_freq, False))
    assert_close_rel(k_out, rotate_by_freq(k_in, positions, inv_freq, False))


# ----------------------------------------------------------------------------------------------
# SGLang's fused KV-cache write on the GPU
# ----------------------------------------------------------------------------------------------

@gpu
@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("flat_buffers", [True, False])
@pytest.mark.parametrize("rot, enable_pdl", [(128, None), (64, True)])
def test_sglang_kv_write(is_neox, dtype, flat_buffers, rot, enable_pdl):
    tokens, heads, kv_heads, d, slots, rows = 21, 8, 2, 128, 64, 2048
    qkv, query, key, value = fused_qkv(tokens, heads, kv_heads, d, dtype)
    before = qkv.clone().view(tokens, -1, d)
    shape = (slots, kv_heads * d) if flat_buffers else (slots, kv_heads, d)
    k_buffer = torch.full(shape, 7.0, device=DEV, dtype=dtype)
    v_buffer = torch.full(shape, -7.0, device=DEV, dtype=dtype)
    cache_loc = torch.randperm(slots, device=DEV)[:tokens]
    positions = torch.randint(0, rows, (tokens,), device=DEV, dtype=torch.int32)
    cache = cache_for(rot, rows)
    arg = sglang.FusedSetKVBufferArg(value=value, k_buffer=k_buffer, v_buffer=v_buffer, k_scale=None, v_scale=None,
                                     cache_loc=cache_loc)
    assert sglang.apply_rope_with_cos_sin_cache_inplace(positions, query, key, d, cache, is_neox, arg,
                                                        enable_pdl) is None

    out = qkv.view(tokens, -1, d)
    ref = rotate_by_cache(before, positions, cache, interleaved=not is_neox)
    assert_close_rel(out[:, : heads + kv_heads], ref[:, : heads + kv_heads], dtype)
    assert torch.equal(out[:, heads + kv_heads:], before[:, heads + kv_heads:])  # value untouched
    kb, vb = k_buffer.view(slots, kv_heads, d), v_buffer.view(slots, kv_heads, d)
    assert torch.equal(kb[cache_loc], out[:, heads: heads + kv_heads])  # the rotated key, as stored in key
    assert torch.equal(vb[cache_loc], out[:, heads + kv_heads:])
    others = torch.ones(slots, dtype=torch.bool, device=DEV)
    others[cache_loc] = False
    assert (kb[others] == 7.0).all() and (vb[others] == -7.0).all()  # other slots untouched
