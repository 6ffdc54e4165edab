"""Drop-ins for vLLM's ``rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox)``
(rotates query and key in place) and ``fused_qk_norm_rope`` (below).

- positions: int64 (or int32) ``[num_tokens]`` (or ``[batch, seq]``, flattened);
- query: ``[num_tokens, num_heads * head_size]`` or ``[num_tokens, num_heads, head_size]`` (or
  ``[batch, seq, num_heads * head_size]``), typically a slice of the fused QKV projection (any
  token stride; heads packed);
- key: likewise with its own head count, or None;
- cos_sin_cache: ``[max_position, rot_dim]`` rows of ``[cos | sin]``, float32 or query's dtype;
  the first rot_dim elements of each head are rotated (partial rotary when rot_dim < head_size);
- is_neox: half-split pairs (GPT-NeoX, Llama) if True, interleaved pairs (GPT-J) if False.

Tokens whose position is outside the cache are left unchanged (the library never reads past
the table). Nothing is copied; views that cannot be taken raise ValueError.
"""

from typing import Optional

import torch

Tensor = torch.Tensor


def _heads(x: Tensor, num_tokens: int, head_size: int, name: str) -> Tensor:
    if x.dim() == 3 and x.shape[0] == num_tokens and x.shape[-1] == head_size:
        return x  # already [num_tokens, num_heads, head_size]
    try:
        return x.view(num_tokens, -1, head_size)
    except RuntimeError as error:  # a view, never a copy: say why it is impossible
        raise ValueError(f"rope_cuda: {name} of shape {tuple(x.shape)} and strides {x.stride()} cannot be viewed "
                         f"as [{num_tokens}, heads, {head_size}] without a copy: {error}") from None


def rotary_embedding(positions: Tensor, query: Tensor, key: Optional[Tensor], head_size: int,
                     cos_sin_cache: Tensor, is_neox: bool) -> None:
    """Applies RoPE to query and key in place (vLLM's ``ops.rotary_embedding`` contract)."""
    # vLLM's own checks: positions [num_tokens] or [batch, seq], and query's and key's leading
    # dimensions the same (else heads would be read as tokens).
    if positions.dim() not in (1, 2):
        raise ValueError(f"rope_cuda: positions must have shape [num_tokens] or [batch_size, seq_len], "
                         f"got {tuple(positions.shape)}")
    lead = tuple(positions.shape)
    for name, x in (("query", query), ("key", key)):
        if x is not None and tuple(x.shape[: len(lead)]) != lead:
            raise ValueError(f"rope_cuda: {name} of shape {tuple(x.shape)} and positions of shape {lead} must have "
                             f"the same {'number of tokens' if len(lead) == 1 else 'batch_size and seq_len'}")
    num_tokens = positions.numel()
    q = _heads(query, num_tokens, head_size, "query")
    k = None if key is None else _heads(key, num_tokens, head_size, "key")
    flat = positions if positions.dim() == 1 else positions.view(-1)
    torch.ops.rope_cuda.rope_.default(q, k, flat, None, None, cos_sin_cache, None, 1.0,
                                      not is_neox, False)


def fused_qk_norm_rope(qkv: Tensor, num_heads_q: int, num_heads_k: int, num_heads_v: int, head_dim: int, eps: float,
                       q_weight: Tensor, k_weight: Tensor, cos_sin_cache: Tensor, is_neox: bool,
                       position_ids: Tensor) -> None:
    """vLLM's ``fused_qk_norm_rope``, in place on the packed ``qkv`` ``[num_tokens, (num_heads_q + num_heads_k +
    num_heads_v) * head_dim]``: each q and k head is RMS-normalized (``x * rsqrt(mean(x^2) + eps) * w``, w
    ``q_weight`` / ``k_weight`` of ``[head_dim]`` in qkv's dtype, in fp32, rounded once) and then rotated by
    the ``[cos | sin]`` row of its token's ``position_ids`` entry in ``cos_sin_cache`` ``[max_position,
    rot_dim]`` (float32 or qkv's dtype; partial rotary when ``rot_dim < head_dim``); v is untouched.
    One launch (rope::rope_forward_qk_norm)."""
    heads = num_heads_q + num_heads_k + num_heads_v
    if qkv.dim() != 2 or qkv.shape[-1] != heads * head_dim:
        raise ValueError(f"rope_cuda: qkv must be [num_tokens, (num_heads_q + num_heads_k + num_heads_v) * head_dim] "
                         f"= [num_tokens, {heads * head_dim}], got {tuple(qkv.shape)}")
    if position_ids.dim() != 1 or position_ids.shape[0] != qkv.shape[0]:
        raise ValueError(f"rope_cuda: position_ids must be [num_tokens] = [{qkv.shape[0]}], "
                         f"got {tuple(position_ids.shape)}")
    packed = _heads(qkv, qkv.shape[0], head_dim, "qkv")
    q = packed[:, :num_heads_q]
    k = packed[:, num_heads_q: num_heads_q + num_heads_k] if num_heads_k > 0 else None
    torch.ops.rope_cuda.rope_qk_norm_.default(q, k, q_weight if num_heads_q > 0 else None,
                                              k_weight if num_heads_k > 0 else None, float(eps), False,
                                              position_ids, None, None, cos_sin_cache, None, 1.0, not is_neox)


def rotary_embedding_and_reshape_and_cache_flash(positions: Tensor, query: Tensor, key: Tensor, head_size: int,
                                                 cos_sin_cache: Tensor, is_neox: bool, value: Tensor,
                                                 key_cache: Tensor, value_cache: Tensor, slot_mapping: Tensor,
                                                 kv_cache_dtype: str, k_scale, v_scale) -> None:
    """vLLM's ``rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox)`` followed by
    ``reshape_and_cache_flash(key, value, key_cache, value_cache, slot_mapping, kv_cache_dtype, k_scale,
    v_scale)``, as one launch with the same results: query and key rotated in place, then the rotated key
    and value written to row ``slot_mapping[t]`` of the ``[num_blocks, block_size, num_kv_heads, head_size]``
    caches (slot -1: no row). ``kv_cache_dtype`` ``"auto"`` (caches in the query's dtype) or ``"fp8"`` /
    ``"fp8_e4m3"`` (uint8 or float8_e4m3fn caches holding ``saturate(x / scale)``, vLLM's bytes).
    ``k_scale`` / ``v_scale``: floats or vLLM's one-element tensors; a tensor is read on the host
    (``float()``, a synchronization, and not inside a CUDA graph capture): pass floats where the scales
    are known."""
    lead = tuple(positions.shape)
    if positions.dim() not in (1, 2):
        raise ValueError(f"rope_cuda: positions must have shape [num_tokens] or [batch_size, seq_len], got {lead}")
    num_tokens = positions.numel()
    for name, x in (("query", query), ("key", key), ("value", value)):
        if tuple(x.shape[: len(lead)]) != lead:
            raise ValueError(f"rope_cuda: {name} of shape {tuple(x.shape)} and positions of shape {lead} must have "
                             f"the same {'number of tokens' if len(lead) == 1 else 'batch_size and seq_len'}")
    q = _heads(query, num_tokens, head_size, "query")
    k = _heads(key, num_tokens, head_size, "key")
    v = _heads(value, num_tokens, head_size, "value")
    flat = positions if positions.dim() == 1 else positions.view(-1)
    torch.ops.rope_cuda.rope_append_.default(q, k, v, key_cache, value_cache, slot_mapping, kv_cache_dtype,
                                             float(k_scale), float(v_scale), "NHD", True, flat, None, None,
                                             cos_sin_cache, None, 1.0, not is_neox)
