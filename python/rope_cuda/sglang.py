"""Drop-in for SGLang's ``sgl_kernel.apply_rope_with_cos_sin_cache_inplace`` and its
``FusedSetKVBufferArg`` (sgl-kernel's ``python/sgl_kernel/elementwise.py``).

``apply_rope_with_cos_sin_cache_inplace(positions, query, key, head_size, cos_sin_cache,
is_neox=True, fused_set_kv_buffer_arg=None, enable_pdl=None)`` rotates query and key in place and
returns None:

- positions: int64 or int32 ``(nnz)`` (SGLang converts with ``positions.long()``; here both are read
  as they are);
- query ``(nnz, num_q_heads * head_size)``, key ``(nnz, num_k_heads * head_size)`` (or 3-D
  ``(nnz, heads, head_size)``), typically slices of the fused QKV projection;
- cos_sin_cache: float32 ``(max_seq_len, rotary_dim)``, cos in the first half of each row and sin in
  the second (any other dtype raises ValueError, as in SGLang); the first rotary_dim elements of
  each head rotate;
- is_neox: half-split pairs if True, interleaved (GPT-J) if False;
- enable_pdl: programmatic dependent launch of the rotation (None means False here; SGLang's None
  turns it on for Hopper and newer when a KV write is fused). Results are the same either way.

With ``fused_set_kv_buffer_arg``, the rotated key and the value are also stored into the KV cache,
as SGLang's kernel does: for each token i, ``k_buffer[cache_loc[i]] = key[i]`` (rotated, the whole
head) and ``v_buffer[cache_loc[i]] = value[i]``, per head. The buffers are SGLang's per-layer pools,
``(num_slots, num_kv_heads * head_size)`` (as ``create_fused_set_kv_buffer_arg`` passes them) or
``(num_slots, num_kv_heads, head_size)``, of query's dtype: SGLang's fused write converts nothing
(its kernel stores in q's dtype, and SGLang takes this path only for bfloat16 KV caches), so another
buffer dtype, e.g. an FP8 cache, raises ValueError here. Likewise ``k_scale`` / ``v_scale`` must be
None (SGLang asserts "k_scale is not yet supported") and ``cache_loc`` must be int64, as SGLang asserts.

The KV write is fused, as in SGLang: one launch (``torch.ops.rope_cuda.rope_append_``, the
library's RoPE + paged KV append with one row per block) rotates query and key and writes both
buffers. Slots named twice in cache_loc get one of the writes, as in SGLang. All arguments are
checked before anything is written; inputs are only viewed, never copied.
"""

from dataclasses import dataclass
from typing import Optional

import torch

from ._api import apply_rope_ as _rotate_
from ._api import apply_rope_and_cache_ as _rotate_and_cache_
from .flashinfer import _cache_arguments, _heads

Tensor = torch.Tensor

_WHERE = "rope_cuda.sglang"


@dataclass
class FusedSetKVBufferArg:
    """SGLang's arguments of the KV-cache write fused into the RoPE call.

    value: ``(nnz, num_v_heads * head_size)``; k_buffer / v_buffer: the layer's key / value pools
    ``(num_slots, num_kv_heads * head_size)``; k_scale / v_scale: must be None (as in SGLang);
    cache_loc: int64 ``(nnz)``, the pool slot of each token.
    """

    value: torch.Tensor
    k_buffer: torch.Tensor
    v_buffer: torch.Tensor
    k_scale: Optional[float]
    v_scale: Optional[float]
    cache_loc: torch.Tensor


def _kv_write(arg, k: Tensor, head_size: int):
    """SGLang's checks of the fused KV write; returns (value, k_buffer, v_buffer) as
    ``[rows, heads, head_size]`` views and cache_loc."""
    if arg.k_scale is not None:
        raise ValueError(f"{_WHERE}: k_scale is not yet supported (SGLang's fused KV write asserts k_scale is None)")
    if arg.v_scale is not None:
        raise ValueError(f"{_WHERE}: v_scale is not yet supported (SGLang's fused KV write asserts v_scale is None)")
    nnz, kv_heads = k.shape[0], k.shape[1]
    loc = arg.cache_loc
    if not isinstance(loc, Tensor) or loc.dtype != torch.int64:
        got = loc.dtype if isinstance(loc, Tensor) else type(loc).__name__
        raise ValueError(f"{_WHERE}: cache_loc must be an int64 tensor (as SGLang asserts), got {got}")
    if loc.dim() != 1 or loc.shape[0] != nnz:
        raise ValueError(f"{_WHERE}: cache_loc must be (nnz) = ({nnz}), one slot per token, got shape "
                         f"{tuple(loc.shape)}")
    value = _heads(arg.value, nnz, head_size, "value", _WHERE)
    buffers = []
    for name in ("k_buffer", "v_buffer"):
        buffer = getattr(arg, name)
        if not isinstance(buffer, Tensor) or buffer.dim() < 2:
            raise ValueError(f"{_WHERE}: {name} must be (num_slots, num_kv_heads * head_size), got "
                             f"{tuple(buffer.shape) if isinstance(buffer, Tensor) else type(buffer).__name__}")
        buffers.append(_heads(buffer, buffer.shape[0], head_size, name, _WHERE))
    k_buffer, v_buffer = buffers
    for name, x in (("value", value), ("k_buffer", k_buffer), ("v_buffer", v_buffer)):
        if x.dtype != k.dtype:
            raise ValueError(f"{_WHERE}: {name} dtype {x.dtype} must be key's ({k.dtype}): SGLang's fused KV write "
                             f"converts nothing (FP8 or other KV caches go through set_kv_buffer instead)")
        if x.shape[1] != kv_heads:
            raise ValueError(f"{_WHERE}: {name} has {x.shape[1]} heads of {head_size} but key has {kv_heads}")
    for name, x in (("value", value), ("k_buffer", k_buffer), ("v_buffer", v_buffer), ("cache_loc", loc)):
        if x.device != k.device:
            raise ValueError(f"{_WHERE}: {name} is on {x.device} but key is on {k.device}")
    return value, k_buffer, v_buffer, loc


def apply_rope_with_cos_sin_cache_inplace(positions: Tensor, query: Tensor, key: Tensor, head_size: int,
                                          cos_sin_cache: Tensor, is_neox: bool = True,
                                          fused_set_kv_buffer_arg: Optional[FusedSetKVBufferArg] = None,
                                          enable_pdl: Optional[bool] = None) -> None:
    """Rotates query and key in place and, with ``fused_set_kv_buffer_arg``, stores the rotated key
    and the value at rows ``cache_loc`` of the KV buffers (SGLang's contract; see the module)."""
    flat, q, k = _cache_arguments(positions, query, key, head_size, cos_sin_cache, _WHERE)
    if fused_set_kv_buffer_arg is None:
        _rotate_(q, k, positions=flat, cos_sin_cache=cos_sin_cache, interleaved=not is_neox,
                 enable_pdl=bool(enable_pdl))  # None: False
        return
    value, k_buffer, v_buffer, loc = _kv_write(fused_set_kv_buffer_arg, k, head_size)
    # The pools are [num_slots, kv_heads, head_size]: a paged cache of one row per block.
    _rotate_and_cache_(q, k, value, k_buffer, v_buffer, loc, positions=flat, cos_sin_cache=cos_sin_cache,
                       interleaved=not is_neox, enable_pdl=bool(enable_pdl))
