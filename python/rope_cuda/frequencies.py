"""Inverse frequencies from a transformers-style config, computed the way transformers does.

A model was trained with the frequencies its framework produced, and transformers produces them
in torch float32 on the CPU (``modeling_rope_utils.py``). The C++ library's ``compute_inv_freq``
works in float64 and lands 1-6 ulp away from those values, which shows at long positions. So
this module repeats transformers' float32 operations, in the same order, for every rope_type it
ships that rotates with one frequency per pair: default, linear, dynamic, yarn, longrope, llama3.
The tests compare the result bit for bit with ``transformers.ROPE_INIT_FUNCTIONS``.
"""

import math
from typing import Any, Optional, Tuple

import torch

SUPPORTED_ROPE_TYPES = ("default", "linear", "dynamic", "yarn", "longrope", "llama3")


def _field(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, dict):
        return config.get(name, default)
    return getattr(config, name, default)


def rope_parameters(config: Any) -> dict:
    """The config's RoPE parameters as one flat dict, in transformers 5 form.

    Reads ``rope_parameters`` (transformers 5) or ``rope_scaling`` + ``rope_theta`` (4.x) and fills
    what transformers' ``standardize_rope_params`` fills: rope_type, rope_theta,
    partial_rotary_factor and, for llama3/yarn/longrope, original_max_position_embeddings.
    """
    params = dict(_field(config, "rope_parameters") or _field(config, "rope_scaling") or {})
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", _field(config, "rope_theta", 10000.0))
    partial = _field(config, "partial_rotary_factor")
    if partial is not None:
        params.setdefault("partial_rotary_factor", partial)
    if params["rope_type"] in ("llama3", "yarn", "longrope"):
        # As transformers: a top-level original_max_position_embeddings (Phi-3) wins.
        top = _field(config, "original_max_position_embeddings")
        if top is not None:
            params["original_max_position_embeddings"] = top
        params.setdefault("original_max_position_embeddings", _field(config, "max_position_embeddings"))
    return params


def _head_dim(config: Any) -> int:
    return _field(config, "head_dim") or _field(config, "hidden_size") // _field(config, "num_attention_heads")


def _exponents(dim: int) -> torch.Tensor:
    # 2i / dim for each pair i, in float32 (the order of operations matters for the last bit).
    return torch.arange(0, dim, 2, dtype=torch.int64).to(dtype=torch.float) / dim


def _plain(base: float, dim: int) -> torch.Tensor:
    return 1.0 / (base ** _exponents(dim))


def _yarn(params: dict, config: Any, base: float, dim: int) -> Tuple[torch.Tensor, float]:
    original = params["original_max_position_embeddings"]
    factor = params.get("factor")
    if factor is None:  # DeepSeek-V3 style: the ratio of the context lengths
        factor = _field(config, "max_position_embeddings") / original

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    attention = params.get("attention_factor")
    if attention is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention = float(mscale(factor, m) / mscale(factor, m_all)) if m and m_all else mscale(factor)
    beta_fast = params.get("beta_fast") or 32
    beta_slow = params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        # The pair index whose wavelength fits `rotations` turns into the original context.
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # keeps the ramp finite
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)
    keep = 1 - ramp  # weight of the unscaled (extrapolated) frequency

    powers = base ** (torch.arange(0, dim, 2).to(dtype=torch.float) / dim)
    extrapolated = 1.0 / powers
    interpolated = 1.0 / (factor * powers)
    return interpolated * (1 - keep) + extrapolated * keep, attention


def _longrope(params: dict, config: Any, base: float, dim: int, seq_len: Optional[int]) -> Tuple[torch.Tensor, float]:
    original = params["original_max_position_embeddings"]
    factor = params.get("factor")
    if factor is None:  # Phi-3: the ratio of the context lengths
        factor = _field(config, "max_position_embeddings") / original
    attention = params.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    # The long factors apply once the sequence outgrows the original context.
    chosen = params["long_factor"] if seq_len and seq_len > original else params["short_factor"]
    rescale = torch.tensor(chosen, dtype=torch.float32)
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return 1.0 / (rescale * base ** shape), attention


def _llama3(params: dict, base: float, dim: int) -> torch.Tensor:
    inv_freq = _plain(base, dim)
    factor = params["factor"]
    low_factor, high_factor = params["low_freq_factor"], params["high_freq_factor"]
    context = params["original_max_position_embeddings"]
    low_wavelen, high_wavelen = context / low_factor, context / high_factor

    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths are divided by factor, short ones kept, the band between blended.
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (context / wavelen - low_factor) / (high_factor - low_factor)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    in_band = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
    return torch.where(in_band, blended, scaled)


def inv_freq_from_config(config: Any, seq_len: Optional[int] = None,
                         device: Optional[torch.device] = None) -> Tuple[torch.Tensor, float]:
    """``(inv_freq, attention_scaling)`` for a transformers config (object or dict).

    The same float32 values as ``transformers.modeling_rope_utils.ROPE_INIT_FUNCTIONS[rope_type]``
    (and the models' default), computed on the CPU as transformers does and then moved to
    ``device``. ``inv_freq`` has ``int(head_dim * partial_rotary_factor) // 2`` entries.

    ``seq_len`` matters for "dynamic" (the NTK base grows with the sequence; None means
    max_position_embeddings) and "longrope" (long factors past the original context); like
    transformers' init functions, it is the caller's current sequence length.
    """
    params = rope_parameters(config)
    rope_type = params["rope_type"]
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise ValueError(f"rope_cuda: rope_type {rope_type!r} is not supported; supported: {SUPPORTED_ROPE_TYPES}")
    base = params["rope_theta"]
    dim = int(_head_dim(config) * params.get("partial_rotary_factor", 1.0))
    if dim < 2:
        raise ValueError(f"rope_cuda: the rotary dimension {dim} is too small (head_dim * partial_rotary_factor)")
    attention = 1.0
    if rope_type == "default":
        inv_freq = _plain(base, dim)
    elif rope_type == "linear":
        inv_freq = _plain(base, dim) / params["factor"]
    elif rope_type == "dynamic":
        factor, max_positions = params["factor"], _field(config, "max_position_embeddings")
        length = max_positions if seq_len is None else max(seq_len, max_positions)
        ntk_base = base * ((factor * length / max_positions) - (factor - 1)) ** (dim / (dim - 2))
        inv_freq = _plain(ntk_base, dim)
    elif rope_type == "yarn":
        inv_freq, attention = _yarn(params, config, base, dim)
    elif rope_type == "longrope":
        inv_freq, attention = _longrope(params, config, base, dim, seq_len)
    else:
        inv_freq = _llama3(params, base, dim)
    return inv_freq.to(device=device), float(attention)
