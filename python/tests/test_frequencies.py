"""inv_freq_from_config against transformers' own ROPE_INIT_FUNCTIONS, bit for bit (CPU only).

Skipped where transformers is not installed.
"""

import pytest
import torch

import rope_cuda

transformers = pytest.importorskip("transformers")
from transformers import GPTNeoXConfig, LlamaConfig, Phi3Config  # noqa: E402
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding  # noqa: E402

SMALL = dict(hidden_size=512, num_attention_heads=4, num_key_value_heads=2, head_dim=128)

LLAMA_CASES = {
    "default": dict(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "linear": dict(rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
    "dynamic": dict(rope_parameters={"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
                    max_position_embeddings=4096),
    "yarn": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 8.0,
                                  "original_max_position_embeddings": 4096}, max_position_embeddings=32768),
    "yarn-deepseek": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0,
                                           "original_max_position_embeddings": 4096, "mscale": 1.0,
                                           "mscale_all_dim": 0.707, "beta_fast": 32, "beta_slow": 1},
                          max_position_embeddings=163840),
    "yarn-untruncated": dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0, "truncate": False,
                                              "original_max_position_embeddings": 32768}, max_position_embeddings=131072),
    "llama3": dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                   max_position_embeddings=131072),
}


def transformers_inv_freq(config, seq_len=None):
    rope_type = config.rope_parameters["rope_type"]
    if rope_type == "default":
        module = LlamaRotaryEmbedding(config)
        return module.inv_freq, module.attention_scaling
    return ROPE_INIT_FUNCTIONS[rope_type](config, None, seq_len=seq_len)


@pytest.mark.parametrize("case", list(LLAMA_CASES))
@pytest.mark.parametrize("seq_len", [None, 100000])
def test_llama_family_configs(case, seq_len):
    config = LlamaConfig(**SMALL, **LLAMA_CASES[case])
    expected, expected_scaling = transformers_inv_freq(config, seq_len)
    actual, scaling = rope_cuda.inv_freq_from_config(config, seq_len=seq_len)
    assert actual.dtype == torch.float32 and actual.shape == expected.shape
    assert torch.equal(actual, expected), (actual - expected).abs().max()
    assert scaling == pytest.approx(expected_scaling, rel=0, abs=0)


def test_dynamic_grows_with_sequence():
    config = LlamaConfig(**SMALL, **LLAMA_CASES["dynamic"])
    short, _ = rope_cuda.inv_freq_from_config(config)
    long, _ = rope_cuda.inv_freq_from_config(config, seq_len=16384)
    assert torch.equal(short, transformers_inv_freq(config)[0])
    assert torch.equal(long, transformers_inv_freq(config, 16384)[0])
    assert (long[1:] < short[1:]).all()


@pytest.mark.parametrize("seq_len", [None, 2000, 100000])
def test_longrope_phi3(seq_len):
    half = 48
    config = Phi3Config(hidden_size=3072, num_attention_heads=32, max_position_embeddings=131072,
                        original_max_position_embeddings=4096,
                        rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0,
                                         "short_factor": [1.0 + 0.01 * i for i in range(half)],
                                         "long_factor": [1.0 + 0.5 * i for i in range(half)]})
    expected, expected_scaling = ROPE_INIT_FUNCTIONS["longrope"](config, None, seq_len=seq_len)
    actual, scaling = rope_cuda.inv_freq_from_config(config, seq_len=seq_len)
    assert torch.equal(actual, expected)
    assert scaling == expected_scaling


def test_partial_rotary_neox():
    config = GPTNeoXConfig(hidden_size=512, num_attention_heads=8, partial_rotary_factor=0.25,
                           rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0})
    expected, _ = ROPE_INIT_FUNCTIONS["linear"](config, None)
    actual, _ = rope_cuda.inv_freq_from_config(config)
    assert actual.numel() == 8 and torch.equal(actual, expected)


def test_plain_dict_config_and_legacy_rope_scaling():
    legacy = {"hidden_size": 512, "num_attention_heads": 4, "rope_theta": 10000.0,
              "rope_scaling": {"type": "linear", "factor": 4.0}}
    config = LlamaConfig(**SMALL, **LLAMA_CASES["linear"])
    assert torch.equal(rope_cuda.inv_freq_from_config(legacy)[0], transformers_inv_freq(config)[0])
