"""rope_cuda.vllm.rotary_embedding: vLLM's in-place contract on fused-QKV slices."""

import pytest
import torch

from rope_cuda import vllm
from reference import assert_close_rel, rotate

pytestmark = pytest.mark.gpu
DEV = "cuda"


def cache_for(rot, rows, dtype=torch.float32):
    inv_freq = 1.0 / 10000.0 ** (torch.arange(0, rot, 2, device=DEV, dtype=torch.float64) / rot)
    angles = torch.arange(rows, device=DEV, dtype=torch.float64)[:, None] * inv_freq
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(dtype)


@pytest.mark.parametrize("is_neox", [True, False])
@pytest.mark.parametrize("rot", [128, 64])
@pytest.mark.parametrize("dtype,cache_dtype", [(torch.bfloat16, torch.float32), (torch.bfloat16, torch.bfloat16),
                                               (torch.float16, torch.float16), (torch.float32, torch.float32)])
@pytest.mark.parametrize("with_key", [True, False])
@pytest.mark.parametrize("three_d", [False, True])
def test_fused_qkv(is_neox, rot, dtype, cache_dtype, with_key, three_d):
    tokens, heads, kv_heads, d, rows = 77, 8, 2, 128, 8192
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * d, device=DEV).to(dtype)
    before = qkv.clone()
    query, key = qkv[:, : heads * d], qkv[:, heads * d: (heads + kv_heads) * d]
    if three_d:
        query, key = query.view(tokens, heads, d), key.view(tokens, kv_heads, d)
    positions = torch.randint(0, rows, (tokens,), device=DEV)
    cache = cache_for(rot, rows, cache_dtype)
    vllm.rotary_embedding(positions, query, key if with_key else None, d, cache, is_neox)

    cos, sin = cache.double()[positions, None, : rot // 2], cache.double()[positions, None, rot // 2:]
    ref = rotate(before.view(tokens, -1, d), cos, sin, interleaved=not is_neox)
    out = qkv.view(tokens, -1, d)
    assert_close_rel(out[:, :heads], ref[:, :heads], dtype)
    k_range = slice(heads, heads + kv_heads)
    if with_key:
        assert_close_rel(out[:, k_range], ref[:, k_range], dtype)
    else:
        assert torch.equal(out[:, k_range], before.view(tokens, -1, d)[:, k_range])
    assert torch.equal(out[:, heads + kv_heads:], before.view(tokens, -1, d)[:, heads + kv_heads:])  # v untouched


def test_batched_positions():
    batch, seq, heads, d = 2, 10, 4, 64
    query = torch.randn(batch, seq, heads * d, device=DEV)
    before = query.clone()
    positions = torch.randint(0, 512, (batch, seq), device=DEV)
    cache = cache_for(d, 512)
    vllm.rotary_embedding(positions, query, None, d, cache, True)
    cos, sin = cache.double()[positions, None, : d // 2], cache.double()[positions, None, d // 2:]
    assert_close_rel(query.view(batch, seq, heads, d), rotate(before.view(batch, seq, heads, d), cos, sin))


def test_cache_dtype_must_match():
    query = torch.randn(4, 2 * 64, device=DEV, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="cos_sin_cache dtype must be float32 or q's dtype"):
        vllm.rotary_embedding(torch.zeros(4, dtype=torch.int64, device=DEV), query, None, 64,
                              cache_for(64, 8, torch.float16), True)
