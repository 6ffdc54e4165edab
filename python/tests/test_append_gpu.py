"""RoPE + paged KV-cache append (torch.ops.rope_cuda.rope_append_, rope_cuda.apply_rope_and_cache_) and vLLM's
rotary_embedding_and_reshape_and_cache_flash drop-in, against a reference written from the semantics:

- q and k rotated in place as reference.rotate does it in float64 (within the library's bounds), v untouched;
  with k_write_back=False k stays as it was and the rotated k goes only to the cache;
- token t's k and v rows go to slot s = slot_mapping[t]: row s % block_size of block s // block_size (NHD
  [blocks, block_size, heads, D], HND [blocks, heads, block_size, D], or a 3-D [slots, heads, D] pool); a
  negative slot or one past the cache writes no row (q and k are still rotated), every other row keeps its bytes;
- kv_cache_dtype "auto": a row holds exactly the bits of the rotated k (as stored to k) and of v; "fp8" /
  "fp8_e4m3": the bytes of saturate(x / scale) in FP8 E4M3 (IEEE fp32 division, round to nearest even, finite
  values beyond +-448 clamped), x the rotated k rounded to q's dtype (or v): within range, torch's own conversion;
- a token whose position is outside a cos/sin table writes nothing at all (q, k and its cache rows);
- bad arguments raise ValueError and write nothing.

The expected caches are built by explicit row writes into a copy of the caches' bytes (filled with a sentinel
first), and compared byte for byte with the op's caches.
"""

import math
import re

import pytest
import torch

import rope_cuda
from rope_cuda import vllm
from reference import assert_close_rel, cos_sin_from_inv_freq, rotate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEV = "cuda"

TOKENS, HQ, HK, D = 37, 8, 2, 128
BLOCKS, BLOCK_SIZE = 5, 16
NUM_SLOTS = BLOCKS * BLOCK_SIZE
ROWS = 4096
SENTINEL = 0xA5  # every byte of a fresh cache: a finite value in every cache dtype
FP8_MAX = 448.0
LAYOUTS = ["NHD", "HND", "3D"]
DTYPES = [torch.bfloat16, torch.float16, torch.float32]


# ---------------------------------------------------------------------------------------------------------------
# Reference helpers
# ---------------------------------------------------------------------------------------------------------------

def bits(t):
    """The bytes of `t` (last dimension widened by the element size): exact, NaN-safe comparisons."""
    return t.detach().contiguous().view(torch.uint8)


def inv_freq_for(rot, base=10000.0):
    return (1.0 / base ** (torch.arange(0, rot, 2, dtype=torch.float64) / rot)).float().to(DEV)


def table_for(rot, rows=ROWS):
    """vLLM's float32 cos_sin_cache [rows, rot]: [cos | sin] of exact float64 angles."""
    angle = torch.arange(rows, device=DEV, dtype=torch.float64)[:, None] * inv_freq_for(rot).double()
    return torch.cat((angle.cos(), angle.sin()), dim=-1).float()


def rope_source(source, rot, positions, scaling=1.0, rows=ROWS):
    """The op's cos/sin keyword arguments, and the float64 cos and sin [tokens, rot / 2] it must rotate by
    (positions inside the table)."""
    if source == "inv_freq":
        freq = inv_freq_for(rot)
        cos, sin = cos_sin_from_inv_freq(positions, freq, scaling)
        return dict(inv_freq=freq, attention_scaling=scaling), cos, sin
    table = table_for(rot, rows)
    half = rot // 2
    at = positions.long().clamp(0, rows - 1)
    return (dict(cos_sin_cache=table, attention_scaling=scaling), table.double()[at, :half] * scaling,
            table.double()[at, half:] * scaling)


def rotated(x, cos, sin, interleaved=False):
    """float64 reference rotation of x [tokens, heads, D] by per-token cos/sin [tokens, rot / 2]."""
    return rotate(x, cos[:, None], sin[:, None], interleaved)


def make_qkv(dtype, tokens=TOKENS, hq=HQ, hk=HK, d=D, fused=True, scale=1.0):
    """q, k, v [tokens, heads, d]: slices of one fused [tokens, (hq + 2 hk) * d] projection, or separate tensors."""
    if fused:
        buf = (torch.randn(tokens, (hq + 2 * hk) * d, device=DEV) * scale).to(dtype)
        heads = buf.view(tokens, hq + 2 * hk, d)
        return heads[:, :hq], heads[:, hq:hq + hk], heads[:, hq + hk:]
    return tuple((torch.randn(tokens, h, d, device=DEV) * scale).to(dtype) for h in (hq, hk, hk))


def new_caches(layout, dtype, hk=HK, d=D, blocks=BLOCKS, block_size=BLOCK_SIZE):
    """k_cache, v_cache in `layout`, every byte SENTINEL."""
    shape = {"NHD": (blocks, block_size, hk, d), "HND": (blocks, hk, block_size, d),
             "3D": (blocks * block_size, hk, d)}[layout]
    caches = [torch.empty(shape, device=DEV, dtype=dtype) for _ in range(2)]
    for c in caches:
        c.view(torch.uint8).fill_(SENTINEL)
    return caches


def layout_arg(layout):
    return "HND" if layout == "HND" else "NHD"


def num_slots_of(cache, layout, block_size=BLOCK_SIZE):
    return cache.shape[0] * (1 if layout == "3D" else block_size)


def cache_row(cache, layout, slot, block_size=BLOCK_SIZE):
    """The [heads, D] row of `slot`: row slot % block_size of block slot // block_size."""
    if layout == "3D":
        return cache[slot]
    block, row = divmod(slot, block_size)
    return cache[block, row] if layout == "NHD" else cache[block, :, row]


def expected_cache(before, layout, slots, rows, written=None, block_size=BLOCK_SIZE):
    """The bytes `before` (a cache's bytes) with slot_mapping[t]'s row set to rows[t] (bytes [tokens, heads, D * e])
    for every token whose slot is in the cache (and, if given, written[t] is true): explicit row writes."""
    out = before.clone()
    num_slots = num_slots_of(out, layout, block_size)
    for t, slot in enumerate(slots.tolist()):
        if 0 <= slot < num_slots and (written is None or bool(written[t])):
            cache_row(out, layout, slot, block_size).copy_(rows[t])
    return out


def fp8_bytes(x, scale, saturate=False):
    """torch's FP8 E4M3 bytes of x / scale: x as float32, IEEE fp32 division (by a tensor, not a Python scalar,
    which torch turns into a product with the reciprocal), round to nearest even. torch's conversion does not
    saturate (it gives NaN beyond 464): with `saturate`, quotients are clamped to +-448 first, which is what a
    saturating conversion stores."""
    x = x.float()
    q = x / torch.full_like(x, scale)
    if saturate:
        q = q.clamp(-FP8_MAX, FP8_MAX)
    return q.to(torch.float8_e4m3fn).view(torch.uint8)


def slot_mapping(dtype=torch.int64, tokens=TOKENS, num_slots=NUM_SLOTS, seed=0):
    """Distinct slots in random order, two negative (no write) and two past the cache (no write)."""
    g = torch.Generator().manual_seed(seed)
    slots = torch.randperm(num_slots, generator=g)[:tokens]
    slots[3], slots[17] = -1, -5
    slots[20], slots[29] = num_slots, num_slots + 1000
    return slots.to(DEV, dtype)


# ---------------------------------------------------------------------------------------------------------------
# "auto" caches
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("source", ["cos_sin_cache", "inv_freq"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_auto_matches_reference(layout, dtype, source, interleaved, rot, index_dtype):
    torch.manual_seed(0)
    q, k, v = make_qkv(dtype)
    q0, k0, v0 = q.clone(), k.clone(), v.clone()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV, dtype=index_dtype)
    kwargs, cos, sin = rope_source(source, rot, positions)
    slots = slot_mapping(index_dtype)
    k_cache, v_cache = new_caches(layout, dtype)
    k_before, v_before = bits(k_cache).clone(), bits(v_cache).clone()

    out = rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, cache_layout=layout_arg(layout),
                                          positions=positions, interleaved=interleaved, **kwargs)
    assert out[0] is q and out[1] is k
    # Every token is rotated, whatever its slot; the tail past rot passes through.
    assert_close_rel(q, rotated(q0, cos, sin, interleaved), dtype)
    assert_close_rel(k, rotated(k0, cos, sin, interleaved), dtype)
    assert torch.equal(bits(v), bits(v0))
    # The rows hold the rotated k's bits and v's; every other row (negative / past-the-end slots) its sentinel.
    assert torch.equal(bits(k_cache), expected_cache(k_before, layout, slots, bits(k)))
    assert torch.equal(bits(v_cache), expected_cache(v_before, layout, slots, bits(v0)))


@pytest.mark.parametrize("source", ["cos_sin_cache", "inv_freq"])
def test_attention_scaling(source):
    torch.manual_seed(1)
    q, k, v = make_qkv(torch.float32)
    q0, k0 = q.clone(), k.clone()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    kwargs, cos, sin = rope_source(source, 128, positions, scaling=1.25)
    k_cache, v_cache = new_caches("NHD", torch.float32)
    before = bits(k_cache).clone()
    slots = slot_mapping()
    rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, positions=positions, **kwargs)
    assert_close_rel(q, rotated(q0, cos, sin))
    assert_close_rel(k, rotated(k0, cos, sin))
    assert torch.equal(bits(k_cache), expected_cache(before, "NHD", slots, bits(k)))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_auto_ignores_the_scales(dtype):
    # "auto" caches take the bits; k_scale / v_scale apply to FP8 caches only (as vLLM's reshape_and_cache_flash).
    torch.manual_seed(2)
    q, k, v = make_qkv(dtype)
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    table = table_for(128)
    results = []
    for scales in (dict(), dict(k_scale=0.5, v_scale=4.0)):
        a = (q.clone(), k.clone(), v.clone(), *new_caches("NHD", dtype))
        rope_cuda.apply_rope_and_cache_(*a, slot_mapping(), positions=positions, cos_sin_cache=table, **scales)
        results.append(a)
    for x, y in zip(*results):
        assert torch.equal(bits(x), bits(y))


# ---------------------------------------------------------------------------------------------------------------
# FP8 caches
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k_scale,v_scale", [(1.0, 1.0), (0.05, 0.3), (0.25, 2.0)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("cache_dtype", [torch.uint8, torch.float8_e4m3fn])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fp8_bytes_are_torchs_conversion(dtype, cache_dtype, layout, k_scale, v_scale):
    torch.manual_seed(3)
    q, k, v = make_qkv(dtype)
    q0, k0, v0 = q.clone(), k.clone(), v.clone()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    kwargs, cos, sin = rope_source("cos_sin_cache", 128, positions)
    slots = slot_mapping()
    k_cache, v_cache = new_caches(layout, cache_dtype)
    k_before, v_before = bits(k_cache).clone(), bits(v_cache).clone()

    rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, kv_cache_dtype="fp8", k_scale=k_scale,
                                    v_scale=v_scale, cache_layout=layout_arg(layout), positions=positions, **kwargs)
    assert_close_rel(q, rotated(q0, cos, sin), dtype)
    assert_close_rel(k, rotated(k0, cos, sin), dtype)
    assert torch.equal(bits(v), bits(v0))
    # Within range (checked, so torch's non-saturating conversion is the reference), the bytes of
    # (rotated k rounded to q's dtype) / k_scale and v / v_scale.
    assert (k.float().abs().max() / k_scale) < FP8_MAX and (v.float().abs().max() / v_scale) < FP8_MAX
    assert torch.equal(bits(k_cache), expected_cache(k_before, layout, slots, fp8_bytes(k, k_scale)))
    assert torch.equal(bits(v_cache), expected_cache(v_before, layout, slots, fp8_bytes(v, v_scale)))


@pytest.mark.parametrize("cache_dtype", [torch.uint8, torch.float8_e4m3fn])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fp8_saturates_beyond_range(dtype, cache_dtype):
    torch.manual_seed(4)
    q, k, v = make_qkv(dtype, tokens=16)
    k.mul_(200)  # rotated values of a few hundred: beyond 448 * 0.5 for about a quarter
    # v / 0.5 = 600, -600, 480, -2000, 448, 464, 472, 8000: all +-448 once saturated (torch gives NaN for some).
    v[0, 0, :8] = torch.tensor([300.0, -300.0, 240.0, -1000.0, 224.0, 232.0, 236.0, 4000.0], device=DEV).to(dtype)
    positions = torch.randint(0, ROWS, (16,), device=DEV)
    slots = torch.arange(16, device=DEV)
    k_cache, v_cache = new_caches("NHD", cache_dtype)
    k_before, v_before = bits(k_cache).clone(), bits(v_cache).clone()
    rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, kv_cache_dtype="fp8", k_scale=0.5, v_scale=0.5,
                                    positions=positions, cos_sin_cache=table_for(128))
    assert (k.float().abs() / 0.5 > FP8_MAX).sum() > 10, "the test needs k values beyond the FP8 range"
    assert torch.equal(bits(k_cache), expected_cache(k_before, "NHD", slots, fp8_bytes(k, 0.5, saturate=True)))
    assert torch.equal(bits(v_cache), expected_cache(v_before, "NHD", slots, fp8_bytes(v, 0.5, saturate=True)))
    # +448 is 0x7E, -448 0xFE (0x7F / 0xFF would be NaN)
    assert bits(v_cache)[0, 0, 0, :8].tolist() == [0x7E, 0xFE, 0x7E, 0xFE, 0x7E, 0x7E, 0x7E, 0x7E]


def division_sensitive_values(scale, dtype):
    """Values x of `dtype` whose FP8 byte of x / scale differs between the IEEE fp32 quotient and the product with
    the fp32 reciprocal of the scale: quotients within a few ulps of a midpoint between two FP8 values."""
    s = torch.tensor(scale, dtype=torch.float32)
    fp8 = torch.arange(0, 0x7F, dtype=torch.uint8).view(torch.float8_e4m3fn).float()  # 0 .. 448
    center = (((fp8[:-1] + fp8[1:]) / 2).double() * s.double()).float()  # x / scale near each midpoint
    candidates, up, down = [center], center, center
    for _ in range(4):
        up = torch.nextafter(up, torch.tensor(math.inf))
        down = torch.nextafter(down, torch.tensor(-math.inf))
        candidates += [up, down]
    x = torch.cat(candidates)
    x = torch.cat([x, -x])
    x = x[x.to(dtype).float() == x]  # representable in dtype
    quotient, product = x / torch.full_like(x, scale), x * (1.0 / s)
    differ = (quotient.to(torch.float8_e4m3fn).view(torch.uint8) != product.to(torch.float8_e4m3fn).view(torch.uint8))
    return x[differ & (quotient.abs() < FP8_MAX)].to(dtype)


@pytest.mark.parametrize("dtype,scale", [(torch.float32, 0.05), (torch.float32, 0.3), (torch.float32, 3.0),
                                         (torch.float32, 1 / 3), (torch.bfloat16, 0.3), (torch.float16, 0.3)])
def test_fp8_quotients_are_ieee_divisions(dtype, scale):
    # saturate(x / scale) with x / scale the correctly rounded fp32 quotient, not x times a rounded reciprocal:
    # v holds values for which the two give different FP8 bytes.
    torch.manual_seed(12)
    values = division_sensitive_values(scale, dtype).to(DEV)
    assert values.numel() >= 2, "the test needs values whose FP8 byte depends on the division"
    q, k, v = make_qkv(dtype)
    assert values.numel() <= HK * D
    v[0].view(-1)[: values.numel()] = values  # token 0's heads (a contiguous [HK, D] block of the fused buffer)
    v0 = v.clone()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    slots = torch.arange(TOKENS, device=DEV)
    k_cache, v_cache = new_caches("NHD", torch.uint8)
    k_before, v_before = bits(k_cache).clone(), bits(v_cache).clone()
    rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, kv_cache_dtype="fp8", k_scale=scale,
                                    v_scale=scale, positions=positions, inv_freq=inv_freq_for(128))
    assert torch.equal(bits(v_cache), expected_cache(v_before, "NHD", slots, fp8_bytes(v0, scale)))
    assert torch.equal(bits(k_cache), expected_cache(k_before, "NHD", slots, fp8_bytes(k, scale, saturate=True)))


def test_fp8_names_agree():
    torch.manual_seed(5)
    q, k, v = make_qkv(torch.bfloat16)
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    results = []
    for name in ("fp8", "fp8_e4m3"):
        a = (q.clone(), k.clone(), v.clone(), *new_caches("HND", torch.uint8))
        rope_cuda.apply_rope_and_cache_(*a, slot_mapping(), kv_cache_dtype=name, k_scale=0.1, v_scale=0.2,
                                        cache_layout="HND", positions=positions, inv_freq=inv_freq_for(128))
        results.append(a)
    for x, y in zip(*results):
        assert torch.equal(bits(x), bits(y))


# ---------------------------------------------------------------------------------------------------------------
# k_write_back, out-of-table positions, fused QKV, packed sequences
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kv_cache_dtype,cache_dtype", [("auto", None), ("fp8", torch.uint8),
                                                       ("fp8", torch.float8_e4m3fn)])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_k_write_back_false(dtype, layout, kv_cache_dtype, cache_dtype):
    torch.manual_seed(6)
    q, k, v = make_qkv(dtype)
    k0 = k.clone()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    kwargs, cos, sin = rope_source("inv_freq", 128, positions)
    slots = slot_mapping()
    scales = dict(k_scale=0.05, v_scale=0.3) if kv_cache_dtype == "fp8" else {}
    runs = []
    for write_back in (True, False):
        a = (q.clone(), k.clone(), v.clone(), *new_caches(layout, cache_dtype or dtype))
        rope_cuda.apply_rope_and_cache_(*a, slots, kv_cache_dtype=kv_cache_dtype, cache_layout=layout_arg(layout),
                                        k_write_back=write_back, positions=positions, **scales, **kwargs)
        runs.append(a)
    (q_a, k_a, v_a, kc_a, vc_a), (q_b, k_b, v_b, kc_b, vc_b) = runs
    assert_close_rel(k_a, rotated(k0, cos, sin), dtype)  # with write-back k is the rotated k ...
    assert torch.equal(bits(k_b), bits(k0))  # ... without, k is untouched
    assert torch.equal(bits(q_b), bits(q_a))
    assert torch.equal(bits(v_b), bits(v_a))
    # and the caches get the same rotated k either way
    assert torch.equal(bits(kc_b), bits(kc_a)) and torch.equal(bits(vc_b), bits(vc_a))
    assert not torch.equal(bits(kc_b), bits(new_caches(layout, cache_dtype or dtype)[0]))


@pytest.mark.parametrize("kv_cache_dtype", ["auto", "fp8"])
def test_out_of_table_positions_write_nothing(kv_cache_dtype):
    # A fused launch writes nothing for a token whose position is outside the table: not q, not k, no cache row
    # (plain rope_ launches pass such tokens through unrotated instead).
    torch.manual_seed(7)
    rows = 64
    dtype = torch.bfloat16
    cache_dtype = dtype if kv_cache_dtype == "auto" else torch.uint8
    q, k, v = make_qkv(dtype)
    q0, k0, v0 = q.clone(), k.clone(), v.clone()
    positions = torch.randint(0, rows, (TOKENS,), device=DEV)
    outside = torch.zeros(TOKENS, dtype=torch.bool, device=DEV)
    for t, p in ((2, rows), (5, 1000), (9, -1), (30, rows + 1)):
        positions[t] = p
        outside[t] = True
    kwargs, cos, sin = rope_source("cos_sin_cache", 128, positions, rows=rows)
    slots = torch.arange(TOKENS, device=DEV)
    k_cache, v_cache = new_caches("NHD", cache_dtype)
    k_before, v_before = bits(k_cache).clone(), bits(v_cache).clone()
    rope_cuda.apply_rope_and_cache_(q, k, v, k_cache, v_cache, slots, kv_cache_dtype=kv_cache_dtype,
                                    positions=positions, **kwargs)
    inside = ~outside
    assert torch.equal(bits(q[outside]), bits(q0[outside])) and torch.equal(bits(k[outside]), bits(k0[outside]))
    assert_close_rel(q[inside], rotated(q0, cos, sin)[inside], dtype)
    assert_close_rel(k[inside], rotated(k0, cos, sin)[inside], dtype)
    if kv_cache_dtype == "auto":
        k_rows, v_rows = bits(k), bits(v0)
    else:
        k_rows, v_rows = fp8_bytes(k, 1.0), fp8_bytes(v0, 1.0)
    assert torch.equal(bits(k_cache), expected_cache(k_before, "NHD", slots, k_rows, written=inside.tolist()))
    assert torch.equal(bits(v_cache), expected_cache(v_before, "NHD", slots, v_rows, written=inside.tolist()))


@pytest.mark.parametrize("kv_cache_dtype", ["auto", "fp8"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_fused_qkv_equals_separate_tensors(dtype, kv_cache_dtype):
    torch.manual_seed(8)
    q, k, v = make_qkv(dtype)  # slices of one [T, (HQ + 2 HK) * D] buffer
    separate = tuple(x.clone() for x in (q, k, v))  # contiguous copies
    assert separate[0].is_contiguous() and not q.is_contiguous()
    positions = torch.randint(0, ROWS, (TOKENS,), device=DEV)
    cache_dtype = dtype if kv_cache_dtype == "auto" else torch.float8_e4m3fn
    scales = dict(k_scale=0.05, v_scale=0.3) if kv_cache_dtype == "fp8" else {}
    runs = []
    for tensors in ((q, k, v), separate):
        caches = new_caches("NHD", cache_dtype)
        rope_cuda.apply_rope_and_cache_(*tensors, *caches, slot_mapping(), kv_cache_dtype=kv_cache_dtype,
                                        positions=positions, cos_sin_cache=table_for(64), **scales)
        runs.append((*tensors, *caches))
    for x, y in zip(*runs):
        assert torch.equal(bits(x), bits(y))


def test_packed_sequences_and_pdl_give_the_same_result():
    # cu_seqlens (+ seqlen_offsets) give each token its index in its sequence (+ the offset): the same call as
    # those positions; enable_pdl changes nothing in the results.
    torch.manual_seed(9)
    lengths, offsets = [5, 0, 9, 23], [3, 0, 100, 7]
    cu = torch.tensor([0, 5, 5, 14, 37], dtype=torch.int32, device=DEV)
    positions = torch.cat([torch.arange(n) + o for n, o in zip(lengths, offsets)]).to(DEV)
    q, k, v = make_qkv(torch.bfloat16)
    calls = [dict(positions=positions), dict(positions=positions, enable_pdl=True),
             dict(cu_seqlens=cu, seqlen_offsets=torch.tensor(offsets, device=DEV)),
             dict(cu_seqlens=cu, seqlen_offsets=torch.tensor(offsets, device=DEV, dtype=torch.int32), enable_pdl=True)]
    runs = []
    for extra in calls:
        a = (q.clone(), k.clone(), v.clone(), *new_caches("NHD", torch.uint8))
        rope_cuda.apply_rope_and_cache_(*a, slot_mapping(), kv_cache_dtype="fp8", k_scale=0.1, v_scale=0.1,
                                        inv_freq=inv_freq_for(128), **extra)
        runs.append(a)
    for other in runs[1:]:
        for x, y in zip(runs[0], other):
            assert torch.equal(bits(x), bits(y))
    # and without offsets the positions are the indices in each sequence
    kwargs, cos, sin = rope_source("inv_freq", 128, torch.cat([torch.arange(n) for n in lengths]).to(DEV))
    q1, k1, v1 = q.clone(), k.clone(), v.clone()
    rope_cuda.apply_rope_and_cache_(q1, k1, v1, *new_caches("NHD", torch.bfloat16), slot_mapping(), cu_seqlens=cu,
                                    **kwargs)
    assert_close_rel(q1, rotated(q, cos, sin), torch.bfloat16)
    assert_close_rel(k1, rotated(k, cos, sin), torch.bfloat16)


# ---------------------------------------------------------------------------------------------------------------
# vLLM: rotary_embedding + reshape_and_cache_flash in one call
# ---------------------------------------------------------------------------------------------------------------

def reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale):
    """vLLM's reshape_and_cache_flash written out: key / value [tokens, heads * head_size] to row slot % block_size of
    block slot // block_size of the [num_blocks, block_size, heads, head_size] caches, slot < 0 skipped; "auto": the
    bits, "fp8": the bytes of saturate(x / scale) (torch's conversion; the test keeps x / scale within range).
    The scales are vLLM's one-element float32 tensors or floats; "auto" ignores them."""
    _, block_size, heads, head_size = key_cache.shape
    key, value = key.reshape(-1, heads, head_size), value.reshape(-1, heads, head_size)
    for t, slot in enumerate(slot_mapping.tolist()):
        if slot < 0:
            continue
        block, offset = divmod(slot, block_size)
        for x, cache, scale in ((key, key_cache, k_scale), (value, value_cache, v_scale)):
            if kv_cache_dtype == "auto":
                cache[block, offset] = x[t]
            else:
                cache.view(torch.uint8)[block, offset] = fp8_bytes(x[t], float(scale))


@pytest.mark.parametrize("rot,table_dtype", [(128, "float32"), (64, "model")])
@pytest.mark.parametrize("scales_as", ["tensor", "float"])
@pytest.mark.parametrize("kv_cache_dtype", ["auto", "fp8"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("is_neox", [True, False])
def test_vllm_rotary_embedding_and_reshape_and_cache_flash(is_neox, dtype, kv_cache_dtype, scales_as, rot,
                                                           table_dtype):
    torch.manual_seed(10)
    tokens, hq, hk, d, blocks, block_size = 29, 8, 2, 128, 6, 16
    qkv = torch.randn(tokens, (hq + 2 * hk) * d, device=DEV).to(dtype)
    original, expected_qkv = qkv.clone(), qkv.clone()
    positions = torch.randint(0, ROWS, (tokens,), device=DEV)
    table = table_for(rot).to(torch.float32 if table_dtype == "float32" else dtype)
    g = torch.Generator().manual_seed(10)
    slots = torch.randperm(blocks * block_size, generator=g)[:tokens]
    slots[4] = slots[11] = -1  # vLLM's padding
    slots = slots.to(DEV)
    cache_dtype = dtype if kv_cache_dtype == "auto" else torch.uint8  # vLLM's FP8 caches are uint8 storage
    key_cache = torch.empty(blocks, block_size, hk, d, dtype=cache_dtype, device=DEV)
    key_cache.view(torch.uint8).fill_(SENTINEL)
    value_cache = key_cache.clone()
    expected_k_cache, expected_v_cache = key_cache.clone(), value_cache.clone()
    k_scale, v_scale = 0.05, 0.3
    scale_args = ((torch.tensor([k_scale], device=DEV), torch.tensor([v_scale], device=DEV)) if scales_as == "tensor"
                  else (k_scale, v_scale))

    def parts(x):
        return x[:, : hq * d], x[:, hq * d: (hq + hk) * d], x[:, (hq + hk) * d:]

    # The reference: the drop-in for vLLM's rotary_embedding, then the cache write written out above.
    query, key, value = parts(expected_qkv)
    vllm.rotary_embedding(positions, query, key, d, table, is_neox)
    reshape_and_cache_flash(key, value, expected_k_cache, expected_v_cache, slots, kv_cache_dtype, *scale_args)

    query, key, value = parts(qkv)
    vllm.rotary_embedding_and_reshape_and_cache_flash(positions, query, key, d, table, is_neox, value, key_cache,
                                                      value_cache, slots, kv_cache_dtype, *scale_args)
    assert torch.equal(bits(qkv), bits(expected_qkv))  # q and k rotated as rotary_embedding does, v untouched
    assert torch.equal(bits(key_cache), bits(expected_k_cache))
    assert torch.equal(bits(value_cache), bits(expected_v_cache))
    # and the rotation is the float64 one, within the dtype's bounds
    half = rot // 2
    cos, sin = table.double()[positions, :half], table.double()[positions, half:]
    q_in, k_in, _ = (x.reshape(tokens, -1, d) for x in parts(original))
    q_out, k_out, _ = (x.reshape(tokens, -1, d) for x in parts(qkv))
    assert_close_rel(q_out, rotated(q_in, cos, sin, not is_neox), dtype)
    assert_close_rel(k_out, rotated(k_in, cos, sin, not is_neox), dtype)


# ---------------------------------------------------------------------------------------------------------------
# opcheck
# ---------------------------------------------------------------------------------------------------------------

def opcheck_args(case):
    """Positional arguments in schema order: q, k, v, k_cache, v_cache, slot_mapping, kv_cache_dtype, k_scale, v_scale,
    cache_layout, k_write_back, positions, cos, sin, cos_sin_cache, inv_freq, attention_scaling, interleaved,
    enable_pdl, cu_seqlens, seqlen_offsets."""
    t, hq, hk, d = 11, 4, 2, 64

    def heads(h, dtype):
        return torch.randn(t, h, d, device=DEV).to(dtype)

    slots = torch.randperm(24)[:t].to(DEV)
    slots[2] = -1
    if case == "auto-nhd-table":
        dt = torch.bfloat16
        kc, vc = new_caches("NHD", dt, hk=hk, d=d, blocks=3, block_size=8)
        return (heads(hq, dt), heads(hk, dt), heads(hk, dt), kc, vc, slots, "auto", 1.0, 1.0, "NHD", True,
                torch.randint(0, 32, (t,), device=DEV), None, None, torch.rand(32, d, device=DEV), None, 1.0, False,
                False, None, None)
    if case == "fp8-uint8-hnd-computed-no-write-back":
        dt = torch.float16
        kc, vc = new_caches("HND", torch.uint8, hk=hk, d=d, blocks=3, block_size=8)
        return (heads(hq, dt), heads(hk, dt), heads(hk, dt), kc, vc, slots.int(), "fp8", 0.5, 2.0, "HND", False,
                torch.randint(0, 1000, (t,), device=DEV), None, None, None, inv_freq_for(d), 1.0, False, False, None,
                None)
    if case == "fp8-e4m3-3d-cos-sin-interleaved":
        # uint8 caches: opcheck's schema check compares tensors with torch.allclose, which float8 lacks.
        dt = torch.float32
        kc, vc = new_caches("3D", torch.uint8, hk=hk, d=d, blocks=3, block_size=8)
        return (heads(hq, dt), heads(hk, dt), heads(hk, dt), kc, vc, slots, "fp8_e4m3", 0.25, 0.25, "NHD", True,
                torch.randint(0, 16, (t,), device=DEV, dtype=torch.int32), torch.rand(16, d // 4, device=DEV),
                torch.rand(16, d // 4, device=DEV), None, None, 1.0, True, False, None, None)
    assert case == "auto-packed"
    dt = torch.float32
    kc, vc = new_caches("NHD", dt, hk=hk, d=d, blocks=3, block_size=8)
    return (heads(hq, dt), heads(hk, dt), heads(hk, dt), kc, vc, slots, "auto", 1.0, 1.0, "NHD", True, None, None,
            None, None, inv_freq_for(d), 1.1, False, True, torch.tensor([0, 4, 11], dtype=torch.int32, device=DEV),
            torch.tensor([2, 0], device=DEV))


@pytest.mark.parametrize("case", ["auto-nhd-table", "fp8-uint8-hnd-computed-no-write-back",
                                  "fp8-e4m3-3d-cos-sin-interleaved", "auto-packed"])
def test_opcheck(case):
    torch.manual_seed(11)
    torch.library.opcheck(torch.ops.rope_cuda.rope_append_.default, opcheck_args(case))


# ---------------------------------------------------------------------------------------------------------------
# Argument errors: ValueError, nothing written
# ---------------------------------------------------------------------------------------------------------------

def error_args(**changes):
    t, hq, hk, d = 5, 4, 2, 64
    a = dict(q=torch.randn(t, hq, d, device=DEV).bfloat16(), k=torch.randn(t, hk, d, device=DEV).bfloat16(),
             v=torch.randn(t, hk, d, device=DEV).bfloat16(), k_cache=new_caches("NHD", torch.bfloat16, hk, d, 3)[0],
             v_cache=new_caches("NHD", torch.bfloat16, hk, d, 3)[1], slot_mapping=torch.arange(t, device=DEV),
             positions=torch.arange(t, device=DEV), cos_sin_cache=torch.randn(32, d, device=DEV))
    a.update(changes)
    return a


def caches_of(dtype, shape=(3, BLOCK_SIZE, 2, 64)):
    c = torch.empty(shape, dtype=dtype, device=DEV)
    c.view(torch.uint8).fill_(SENTINEL)
    return dict(k_cache=c, v_cache=c.clone())


ERRORS = {
    "auto with float32 caches": (lambda: caches_of(torch.float32),
                                 "k_cache dtype must be q's (BFloat16) with kv_cache_dtype \"auto\", got Float"),
    "auto with fp8 caches": (lambda: caches_of(torch.uint8), "k_cache dtype must be q's (BFloat16)"),
    "unknown kv_cache_dtype": (lambda: dict(kv_cache_dtype="int8"),
                               'kv_cache_dtype must be "auto", "fp8" or "fp8_e4m3", got "int8"'),
    "fp8 with bfloat16 caches": (lambda: dict(kv_cache_dtype="fp8"), "k_cache dtype must be float8_e4m3fn or uint8"),
    "fp8 v_cache bfloat16": (lambda: dict(kv_cache_dtype="fp8", k_cache=caches_of(torch.uint8)["k_cache"]),
                             "v_cache dtype must be float8_e4m3fn or uint8"),
    "fp8 k_scale 0": (lambda: dict(caches_of(torch.uint8), kv_cache_dtype="fp8", k_scale=0.0),
                      "k_scale must be in [2^-64, 2^64]"),
    "fp8 v_scale nan": (lambda: dict(caches_of(torch.float8_e4m3fn), kv_cache_dtype="fp8", v_scale=math.nan),
                        "v_scale must be in [2^-64, 2^64]"),
    "cache head count": (lambda: caches_of(torch.bfloat16, (3, BLOCK_SIZE, 4, 64)),
                         "does not hold k's 2 heads of 64"),
    "cache head_dim": (lambda: caches_of(torch.bfloat16, (3, BLOCK_SIZE, 2, 32)), "does not hold k's 2 heads of 64"),
    "HND on NHD caches": (lambda: dict(cache_layout="HND"), "does not hold k's 2 heads of 64 (cache_layout HND)"),
    "bad cache_layout": (lambda: dict(cache_layout="NDH"),
                         'cache_layout must be "NHD" (vLLM) or "HND" (FlashInfer), got "NDH"'),
    "5-D cache": (lambda: caches_of(torch.bfloat16, (3, BLOCK_SIZE, 2, 64, 1)),
                  "k_cache must be [num_blocks, block_size, kv_heads, head_dim]"),
    "caches of different shapes": (lambda: dict(v_cache=caches_of(torch.bfloat16, (4, BLOCK_SIZE, 2, 64))["v_cache"]),
                                   "k_cache and v_cache must have the same shape"),
    "one tensor as both caches": (lambda: (lambda c: dict(k_cache=c, v_cache=c))(caches_of(torch.bfloat16)["k_cache"]),
                                  "k_cache and v_cache overlap"),
    "slot_mapping length": (lambda: dict(slot_mapping=torch.arange(4, device=DEV)),
                            "slot_mapping must be [num_tokens] = [5]"),
    "slot_mapping float": (lambda: dict(slot_mapping=torch.arange(5.0, device=DEV)),
                           "slot_mapping dtype must be int32 or int64"),
    "slot_mapping on the host": (lambda: dict(slot_mapping=torch.arange(5)), "slot_mapping is on cpu"),
    "v heads": (lambda: dict(v=torch.randn(5, 4, 64, device=DEV).bfloat16()), "v must be shaped like k [5, 2, 64]"),
    "v dtype": (lambda: dict(v=torch.randn(5, 2, 64, device=DEV)), "v dtype must be k's (BFloat16)"),
    "positions length": (lambda: dict(positions=torch.arange(6, device=DEV)), "positions must have q's leading shape"),
    "two cos/sin sources": (lambda: dict(inv_freq=inv_freq_for(64)), "pass exactly one cos/sin source"),
    "4-D q": (lambda: dict(q=torch.randn(1, 5, 4, 64, device=DEV).bfloat16(),
                           k=torch.randn(1, 5, 2, 64, device=DEV).bfloat16(),
                           positions=torch.arange(5, device=DEV).view(1, 5)),
              "the KV-cache append takes q [tokens, heads, head_dim]"),
    "q requires grad": (lambda: dict(q=torch.randn(5, 4, 64, device=DEV).bfloat16().requires_grad_()),
                        "not differentiable"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_argument_errors_write_nothing(case):
    changes, match = ERRORS[case]
    args = error_args(**changes())
    tensors = {name: x for name, x in args.items() if isinstance(x, torch.Tensor)}
    before = {name: bits(x).clone() for name, x in tensors.items()}
    positional = [args.pop(name) for name in ("q", "k", "v", "k_cache", "v_cache", "slot_mapping")]
    with pytest.raises(ValueError, match=re.escape(match)):
        rope_cuda.apply_rope_and_cache_(*positional, **args)
    for name, x in tensors.items():
        assert torch.equal(bits(x), before[name]), f"{name} was written"


def test_vllm_argument_errors_write_nothing():
    tokens, hq, hk, d = 6, 4, 2, 64
    qkv = torch.randn(tokens, (hq + 2 * hk) * d, device=DEV).bfloat16()
    caches = caches_of(torch.bfloat16)
    before = [bits(x).clone() for x in (qkv, *caches.values())]
    query, key, value = qkv[:, : hq * d], qkv[:, hq * d: (hq + hk) * d], qkv[:, (hq + hk) * d:]
    table = table_for(d)
    with pytest.raises(ValueError, match="must have the same number of tokens"):
        vllm.rotary_embedding_and_reshape_and_cache_flash(torch.arange(5, device=DEV), query, key, d, table, True,
                                                          value, caches["k_cache"], caches["v_cache"],
                                                          torch.arange(6, device=DEV), "auto", 1.0, 1.0)
    with pytest.raises(ValueError, match="k_cache dtype must be float8_e4m3fn or uint8"):
        vllm.rotary_embedding_and_reshape_and_cache_flash(torch.arange(6, device=DEV), query, key, d, table, True,
                                                          value, caches["k_cache"], caches["v_cache"],
                                                          torch.arange(6, device=DEV), "fp8", 1.0, 1.0)
    for x, b in zip((qkv, *caches.values()), before):
        assert torch.equal(bits(x), b)
