"""RotaryEmbedding built from a transformers config, against transformers' rotary module + function."""

import pytest
import torch

import rope_cuda
from reference import assert_close_rel, cos_sin_from_inv_freq, rotate

transformers = pytest.importorskip("transformers")
from transformers import LlamaConfig  # noqa: E402
from transformers.models.llama import modeling_llama  # noqa: E402

pytestmark = pytest.mark.gpu
DEV = "cuda"


def llama31_config():
    return LlamaConfig(hidden_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=128,
                       max_position_embeddings=131072,
                       rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                        "original_max_position_embeddings": 8192})


@pytest.mark.parametrize("table", [False, True])
def test_matches_transformers_rotary_module(table):
    config = llama31_config()
    hf_rotary = modeling_llama.LlamaRotaryEmbedding(config).to(DEV)
    rope = rope_cuda.RotaryEmbedding.from_config(config, max_positions=4096 if table else None, device=DEV)
    assert torch.equal(rope.inv_freq, hf_rotary.inv_freq)
    batch, seq = 2, 33
    positions = torch.randint(0, 4096, (batch, seq), device=DEV)
    q = torch.randn(batch, seq, 4, 128, device=DEV)
    k = torch.randn(batch, seq, 2, 128, device=DEV)
    cos, sin = hf_rotary(q, positions)
    expected = modeling_llama.apply_rotary_pos_emb(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    actual = rope(positions, q, k)
    for a, e in zip(actual, expected):
        # transformers rounds the angle to fp32 before cos: at positions < 4096 up to 2.4e-4 rad.
        assert (a - e.transpose(1, 2)).abs().max() < (1e-5 if table else 3e-3)


def test_computed_mode_is_exact_at_long_positions():
    config = llama31_config()
    rope = rope_cuda.RotaryEmbedding.from_config(config, device=DEV)
    positions = torch.randint(100_000, 1_000_000, (64,), device=DEV)
    q = torch.randn(64, 4, 128, device=DEV)
    out, none = rope(positions, q)
    assert none is None
    cos, sin = cos_sin_from_inv_freq(positions, rope.inv_freq)
    assert_close_rel(out, rotate(q, cos[:, None], sin[:, None]))


def test_yarn_attention_scaling_and_in_place():
    config = LlamaConfig(hidden_size=256, num_attention_heads=4, head_dim=64, max_position_embeddings=32768,
                         rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                          "original_max_position_embeddings": 4096})
    rope = rope_cuda.RotaryEmbedding.from_config(config, device=DEV)
    assert rope.attention_scaling > 1.0
    q = torch.randn(10, 4, 64, device=DEV)
    before = q.clone()
    positions = torch.arange(10, device=DEV)
    out, _ = rope(positions, q, inplace=True)
    assert out is q
    cos, sin = cos_sin_from_inv_freq(positions, rope.inv_freq, rope.attention_scaling)
    assert_close_rel(q, rotate(before, cos[:, None], sin[:, None]))


def test_from_model_inv_freq():
    config = llama31_config()
    hf_rotary = modeling_llama.LlamaRotaryEmbedding(config).to(DEV)
    rope = rope_cuda.RotaryEmbedding.from_inv_freq(hf_rotary.inv_freq, hf_rotary.attention_scaling)
    assert rope.rotary_dim == 128 and torch.equal(rope.inv_freq, hf_rotary.inv_freq)
